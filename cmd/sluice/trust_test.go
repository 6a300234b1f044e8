package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// countingBackend is a TCP server that counts its connections and the
// bytes it reads, and answers each connection with "hello".
func countingBackend(t *testing.T) (string, *atomic.Int32, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	var got atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			wg.Go(func() {
				defer c.Close()
				c.Write([]byte("hello\n"))
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 1024)
				for {
					k, err := c.Read(buf)
					got.Add(int64(k))
					if err != nil {
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String(), &n, &got
}

// refusedConn reports whether the connection ends without a byte of data
// (a reset or a close), as a refused client sees it.
func refusedConn(c net.Conn) bool {
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	return n == 0 && err != nil
}

// refused connects from src to addr and reports whether the connection is
// refused: reset before the connect returns (sluice refuses at once, and on
// loopback its reset can overtake the handshake's last step) or ended
// without a byte of data.
func refused(t *testing.T, src, addr string) bool {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return refusedConn(c)
}

var endRE = regexp.MustCompile(` end=(\w+)`)

// ends counts the end= values of sluice's connection lines.
func ends(out string) map[string]int {
	m := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "msg=connection") {
			if e := endRE.FindStringSubmatch(line); e != nil {
				m[e[1]]++
			}
		}
	}
	return m
}

// TestProxyHeaderTrust checks who may and who must send a header: from an
// untrusted address every header is refused, and the backend gets none of
// its bytes (it is connected to at once, for servers that speak first); a
// trusted sender that sends none is closed at the deadline; malformed
// headers are refused with a log line saying why; untrusted clients
// without a header are served.
func TestProxyHeaderTrust(t *testing.T) {
	backend, _, got := countingBackend(t)
	addr := freePort(t)
	p := startSluice(t, nil, "-c", writeFile(t, fmt.Sprintf(`[listeners.pp]
bind = %q
pool = "p"
proxy_protocol = "any"
proxy_protocol_from = ["127.0.0.2"]
proxy_protocol_timeout = "300ms"
[pools.p]
[[pools.p.backends]]
address = %q
`, addr, backend)))
	p.waitOutput(t, "listening")

	v1 := "PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n"
	v2 := "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xcb\x00\x71\x07\x7f\x00\x00\x01\x15\xb3\x00\x50"
	const tries = 50
	for i := range tries {
		c := dialFrom(t, "127.0.0.1", addr)
		c.Write([]byte([]string{v1, v2}[i%2] + "GET / HTTP/1.0\r\n\r\n"))
		// The backend's greeting may come first: the connection
		// is made before the client's bytes are read.
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(c); !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("untrusted header %d: %v, want a reset", i, err)
		}
	}
	waitFor(t, 5*time.Second, "log lines", func() bool { return ends(p.out.String())["bad_preamble"] == tries })
	if n := got.Load(); n != 0 {
		t.Fatalf("the backend got %d bytes from untrusted headers", n)
	}
	if !strings.Contains(p.out.String(), "PROXY header from an untrusted sender") {
		t.Errorf("no reason in the log:\n%s", p.out)
	}

	// Untrusted without a header: served as usual once it speaks.
	c := dialFrom(t, "127.0.0.1", addr)
	c.Write([]byte("ping\n"))
	if got := readLine(c); got != "hello\n" {
		t.Errorf("untrusted client without header got %q", got)
	}
	c.Close()

	// Trusted and silent, or with a header cut short: closed at the
	// deadline.
	for _, pre := range []string{"", v1[:20], v2[:20]} {
		c := dialFrom(t, "127.0.0.2", addr)
		c.Write([]byte(pre))
		start := time.Now()
		if !refusedConn(c) {
			t.Fatalf("trusted sender with %q was served", pre)
		}
		if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
			t.Errorf("trusted sender with %q closed after %v, want the 300ms deadline", pre, d)
		}
	}
	waitFor(t, 5*time.Second, "timeout lines", func() bool { return ends(p.out.String())["preamble_timeout"] == 3 })

	// Malformed: closed at once, with what was wrong.
	for _, tc := range []struct{ in, why string }{
		{"GET / HTTP/1.0\r\n\r\n", "no PROXY header from a trusted sender"},
		{"PROXY TCP9 1.2.3.4 5.6.7.8 1 2\r\n", "v1 protocol must be TCP4, TCP6 or UNKNOWN"},
		{"PROXY " + strings.Repeat("X", 120), "v1 line longer than 107 bytes"},
		{"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff", "v2 length exceeds 4096 bytes"},
		{"\r\n\r\n\x00\r\nQUIT\n\x21\x41\x00\x0c", "address family and protocol byte is undefined"},
	} {
		c := dialFrom(t, "127.0.0.2", addr)
		c.Write([]byte(tc.in))
		start := time.Now()
		if !refusedConn(c) || time.Since(start) > 250*time.Millisecond {
			t.Errorf("%q: not refused at once", tc.in)
		}
		p.waitOutput(t, tc.why)
	}
	if n := got.Load(); n != int64(len("ping\n")) {
		t.Errorf("the backend got %d bytes, want 5 (the untrusted client without header)", n)
	}
}

// TestAllowDenyAndClientLimits checks the access keys against the real
// client: denied clients are refused before a backend is touched, and
// per-client limits refuse past their cap without affecting others.
func TestAllowDenyAndClientLimits(t *testing.T) {
	backend, accepted, _ := countingBackend(t)
	addr := freePort(t)
	p := startSluice(t, nil, "-c", writeFile(t, fmt.Sprintf(`[listeners.acl]
bind = %q
pool = "p"
allow = ["127.0.0.0/24"]
deny = ["127.0.0.66"]
max_connections_per_client = 2
new_connections_per_client = "3/m"
[pools.p]
[[pools.p.backends]]
address = %q
`, addr, backend)))
	p.waitOutput(t, "listening")

	for _, src := range []string{"127.0.0.66", "127.0.1.5"} { // denied, not allowed
		if !refused(t, src, addr) {
			t.Errorf("%s was served", src)
		}
	}
	waitFor(t, 5*time.Second, "denied lines", func() bool { return ends(p.out.String())["denied"] == 2 })
	if n := accepted.Load(); n != 0 {
		t.Fatalf("the backend saw %d connections of denied clients", n)
	}

	// Two live connections from one client; a third is refused, while
	// another client is served.
	var held []net.Conn
	for range 2 {
		c := dialFrom(t, "127.0.0.7", addr)
		if got := readLine(c); got != "hello\n" {
			t.Fatalf("connection within the cap got %q", got)
		}
		held = append(held, c)
	}
	if !refused(t, "127.0.0.7", addr) {
		t.Error("third concurrent connection was served")
	}
	if got := readLine(dialFrom(t, "127.0.0.8", addr)); got != "hello\n" {
		t.Errorf("another client got %q", got)
	}
	// Its rate: 3 a minute, 2 used by the held ones; the refused one
	// used none.
	held[0].Close()
	defer func() {
		if t.Failed() {
			t.Logf("sluice output:\n%s", p.out)
		}
	}()
	waitFor(t, 5*time.Second, "the closed connection's line", func() bool {
		return strings.Contains(p.out.String(), "client=127.0.0.7") && ends(p.out.String())["client_closed"] >= 1
	})
	c := dialFrom(t, "127.0.0.7", addr)
	if got := readLine(c); got != "hello\n" {
		t.Fatalf("third connection in the minute got %q", got)
	}
	c.Close()
	held[1].Close()
	waitFor(t, 5*time.Second, "closed lines", func() bool { return ends(p.out.String())["client_closed"] >= 3 })
	if !refused(t, "127.0.0.7", addr) {
		t.Error("fourth connection in a minute was served")
	}
	waitFor(t, 5*time.Second, "client_limit lines", func() bool { return ends(p.out.String())["client_limit"] == 2 })
}

func readLine(c net.Conn) string {
	buf := make([]byte, 64)
	n, _ := c.Read(buf)
	return string(buf[:n])
}
