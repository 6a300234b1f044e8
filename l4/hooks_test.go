package l4

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"sluice/internal/pool"
)

// helloParser is a tiny preamble: "HELLO addr:port\n" names the client.
type helloParser struct{}

func (helloParser) ParsePreamble(b []byte, c *Client) (int, error) {
	const prefix = "HELLO "
	if len(b) < len(prefix) {
		if !bytes.HasPrefix([]byte(prefix), b) {
			return 0, errors.New("not a hello")
		}
		return 0, ErrNeedMore
	}
	if !bytes.HasPrefix(b, []byte(prefix)) {
		return 0, errors.New("not a hello")
	}
	nl := bytes.IndexByte(b, '\n')
	if nl < 0 {
		return 0, ErrNeedMore
	}
	ap, err := netip.ParseAddrPort(string(b[len(prefix):nl]))
	if err != nil {
		return 0, fmt.Errorf("bad address: %w", err)
	}
	c.Addr = ap
	return nl + 1, nil
}

// tellBackend writes "FROM client via local\n" to the backend.
type tellBackend struct{}

func (tellBackend) AppendBackendPreamble(dst []byte, c *Client) []byte {
	return fmt.Appendf(dst, "FROM %s via %s to %s\n", c.Addr, c.Via, c.Local)
}

// admitter refuses clients by port, and counts admissions and ends.
type admitter struct {
	mu     sync.Mutex
	deny   map[uint16]error
	live   map[netip.AddrPort]int
	admits int
}

func (a *admitter) Admit(c *Client) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.deny[c.Addr.Port()]; err != nil {
		return err
	}
	a.admits++
	a.live[c.Addr]++
	return nil
}

func (a *admitter) Done(c *Client) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.live[c.Addr]--
}

// recorder is a backend that reports the first line it reads, then echoes.
func recorder(lines chan<- string) func(c *net.TCPConn) {
	return func(c *net.TCPConn) {
		var line []byte
		one := make([]byte, 1)
		for {
			if _, err := c.Read(one); err != nil {
				return
			}
			if one[0] == '\n' {
				break
			}
			line = append(line, one[0])
		}
		lines <- string(line)
		io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{c})
	}
}

func TestPreambleNamesTheClient(t *testing.T) {
	lines := make(chan string, 1)
	b := startBackend(t, recorder(lines))
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr),
		Preamble: helloParser{}, BackendPreamble: tellBackend{}})
	c := dial(t, p.addr, "")
	// In pieces, so that the parser needs more more than once.
	for _, piece := range []string{"HEL", "LO 192.0.2.7:4", "242\nping\n"} {
		c.Write([]byte(piece))
		time.Sleep(10 * time.Millisecond) // the traffic pattern under test
	}
	want := fmt.Sprintf("FROM 192.0.2.7:4242 via %s to %s", c.LocalAddr(), c.RemoteAddr())
	select {
	case got := <-lines:
		if got != want {
			t.Fatalf("backend preamble %q, want %q", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the backend got no preamble")
	}
	// The client's preamble was consumed; its bytes after it go on.
	if got := readLine(t, c); got != "ping" {
		t.Fatalf("echo %q, want ping", got)
	}
	c.Close()
	rec := p.log.waitEnd(t, EndClientClosed)
	if rec["client"] != "192.0.2.7:4242" || rec["via"] != c.LocalAddr().String() {
		t.Fatalf("log %v, want client 192.0.2.7:4242 via %s", rec, c.LocalAddr())
	}
	if rec["bytes_in"] != float64(len("ping\n")) {
		t.Fatalf("bytes_in in %v, want the bytes after the preamble", rec)
	}
}

func TestPreambleRefusals(t *testing.T) {
	cases := []struct {
		name  string
		send  string
		close bool // half-close after sending
		end   End
	}{
		{"garbage", "GET / HTTP/1.1\r\n", false, EndBadPreamble},
		{"bad address", "HELLO nowhere\n", false, EndBadPreamble},
		{"incomplete then FIN", "HELLO 192.0.2.7", true, EndBadPreamble},
		{"incomplete then silence", "HELLO 192.0.2.7", false, EndPreambleTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := startBackend(t, greeter("b"))
			p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr),
				Preamble: helloParser{}, PreambleTimeout: 200 * time.Millisecond})
			c := dial(t, p.addr, "")
			c.Write([]byte(tc.send))
			if tc.close {
				c.CloseWrite()
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("client saw %v, want a reset", err)
			}
			rec := p.log.waitEnd(t, tc.end)
			if rec["error"] == nil || rec["backend"] != "" {
				t.Fatalf("log %v: want an error and no backend", rec)
			}
		})
	}
}

func TestAdmitter(t *testing.T) {
	b := startBackend(t, greeter("b"))
	a := &admitter{live: map[netip.AddrPort]int{}, deny: map[uint16]error{
		1: errors.New("on the deny list"),
		2: fmt.Errorf("too many: %w", &RefusedError{End: EndClientLimit}),
	}}
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr), Preamble: helloParser{}, Admit: a})
	for _, tc := range []struct {
		port uint16
		end  End
	}{{1, EndDenied}, {2, EndClientLimit}} {
		c := dial(t, p.addr, "")
		fmt.Fprintf(c, "HELLO 192.0.2.1:%d\n", tc.port)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("refused client saw %v, want a reset", err)
		}
		p.log.waitEnd(t, tc.end)
	}
	ok := dial(t, p.addr, "")
	fmt.Fprintf(ok, "HELLO 192.0.2.1:3\n")
	if got := readLine(t, ok); got != "b" {
		t.Fatalf("admitted client greeted %q", got)
	}
	ok.Close()
	p.log.waitEnd(t, EndClientClosed)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.admits != 1 || a.live[netip.MustParseAddrPort("192.0.2.1:3")] != 0 {
		t.Fatalf("admits %d, live %v: want one admission, ended once", a.admits, a.live)
	}
}

// untrusted is a Preamble for clients that must not send one: like a PROXY
// policy for a peer outside proxy_protocol_from, it lets them through at
// once and refuses a "HELLO " preamble in their first bytes.
type untrusted struct{}

func (untrusted) ParsePreamble(b []byte, c *Client) (int, error) {
	const prefix = "HELLO "
	switch {
	case bytes.HasPrefix(b, []byte(prefix)):
		return 0, errors.New("hello from an untrusted client")
	case len(b) > 0 && bytes.HasPrefix([]byte(prefix), b):
		return 0, ErrNeedMore
	}
	return 0, nil
}

// countBytes is a backend that greets, then counts what it reads.
func countBytes(n *atomic.Int64) func(c *net.TCPConn) {
	return func(c *net.TCPConn) {
		io.WriteString(c, "b\n")
		buf := make([]byte, 512)
		for {
			k, err := c.Read(buf)
			n.Add(int64(k))
			if err != nil {
				return
			}
		}
	}
}

// TestNoPreambleConnectsAtOnce checks a client the Preamble expects no
// preamble from: a server that speaks first greets it without waiting for
// the preamble timeout, and its first bytes are still checked: a preamble
// in them is refused before the backend gets a byte.
func TestNoPreambleConnectsAtOnce(t *testing.T) {
	var got atomic.Int64
	b := startBackend(t, countBytes(&got))
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr),
		Preamble: untrusted{}, PreambleTimeout: time.Minute})

	c := dial(t, p.addr, "")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got := readLine(t, c); got != "b" {
		t.Fatalf("silent client greeted %q, want b", got)
	}
	// Too few bytes to tell, then more: served.
	io.WriteString(c, "HEL")
	eventually(t, 5*time.Second, "the backend reading HEL", func() bool { return got.Load() == 3 })
	c.Close()
	p.log.waitEnd(t, EndClientClosed)

	c = dial(t, p.addr, "")
	io.WriteString(c, "HELLO 192.0.2.7:4242\nping\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var err error
	for err == nil {
		_, err = c.Read(make([]byte, 16))
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client with a preamble saw %v, want a reset", err)
	}
	rec := p.log.waitEnd(t, EndBadPreamble)
	if rec["client"] != c.LocalAddr().String() || !strings.Contains(fmt.Sprint(rec["error"]), "hello from an untrusted client") {
		t.Fatalf("log %v: want the peer and the parser's error", rec)
	}
	if n := got.Load(); n != 3 {
		t.Fatalf("the backend read %d bytes, want only the first client's 3", n)
	}
}

// TestLocalAddressOnlyForBackendPreamble checks that the getsockname for
// Client.Local is made only for a BackendPreamble: an Admitter alone sees
// none.
func TestLocalAddressOnlyForBackendPreamble(t *testing.T) {
	b := startBackend(t, greeter("b"))
	a := &localSeen{}
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr), Admit: a})
	c := dial(t, p.addr, "")
	if got := readLine(t, c); got != "b" {
		t.Fatalf("greeted %q", got)
	}
	c.Close()
	p.log.waitEnd(t, EndClientClosed)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.admits != 1 || a.local.IsValid() {
		t.Fatalf("%d admissions, Local %v: want one, with no local address", a.admits, a.local)
	}
}

// localSeen admits everyone and records the Local it was shown.
type localSeen struct {
	mu     sync.Mutex
	admits int
	local  netip.AddrPort
}

func (a *localSeen) Admit(c *Client) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.admits++
	a.local = c.Local
	return nil
}

func (a *localSeen) Done(*Client) {}

// idParser names a unique ID for each connection, as a PROXY v2 header's
// TLV 0x05 does.
type idParser struct{ id string }

func (p idParser) ParsePreamble(b []byte, c *Client) (int, error) {
	if len(b) == 0 {
		return 0, ErrNeedMore
	}
	c.UniqueID = []byte(p.id)
	return 0, nil
}

// TestUniqueIDLogged checks the unique_id= of the log line: printable
// bytes as they are, others escaped, cut to 128 bytes; absent without one.
func TestUniqueIDLogged(t *testing.T) {
	long := strings.Repeat("x", 200)
	for _, tc := range []struct{ id, want string }{
		{"", ""},
		{"4f2a-99", "4f2a-99"},
		{"a b\n\x00\\\xff", `a\x20b\x0a\x00\x5c\xff`},
		{long, long[:128] + "..."},
	} {
		b := startBackend(t, greeter("b"))
		p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr), Preamble: idParser{tc.id}})
		c := dial(t, p.addr, "")
		io.WriteString(c, "x\n")
		if got := readLine(t, c) + readLine(t, c); got != "bx" {
			t.Fatalf("greeted and echoed %q", got)
		}
		c.Close()
		rec := p.log.waitEnd(t, EndClientClosed)
		if got, _ := rec["unique_id"].(string); got != tc.want || (tc.want == "") != (rec["unique_id"] == nil) {
			t.Errorf("id %q logged as %v, want %q", tc.id, rec["unique_id"], tc.want)
		}
	}
}

// resetMidPreamble is a BackendPreamble that holds the loop until the
// backend has reset the connection, so that the preamble cannot be written.
type resetMidPreamble struct{ inHook, reset chan struct{} }

func (r resetMidPreamble) AppendBackendPreamble(dst []byte, c *Client) []byte {
	close(r.inHook)
	select {
	case <-r.reset:
	case <-time.After(5 * time.Second):
	}
	return append(dst, "PREAMBLE\n"...)
}

// TestBytesInWithoutBackendPreamble checks that bytes_in never counts the
// BackendPreamble, even when it could not be written: it is 0, not below.
func TestBytesInWithoutBackendPreamble(t *testing.T) {
	r := resetMidPreamble{make(chan struct{}), make(chan struct{})}
	b := startBackend(t, func(c *net.TCPConn) {
		<-r.inHook
		c.SetLinger(0)
		c.Close()
		close(r.reset)
	})
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr), BackendPreamble: r})
	// The reset passed on may overtake the connect's last step.
	c, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
	if err == nil {
		defer c.Close()
	} else if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatal(err)
	}
	rec := p.log.waitEnd(t, EndBackendReset)
	if rec["bytes_in"] != float64(0) {
		t.Fatalf("bytes_in in %v, want 0", rec)
	}
}
