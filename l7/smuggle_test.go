package l7

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"sluice/internal/pool"
)

// TestAmbiguousRequestsRefused sends requests a proxy and its backend could
// frame differently (request smuggling), and CONNECT: none may reach the
// backend as sent. Content-Length with Transfer-Encoding is forwarded as
// RFC 9112 section 6.3 allows an intermediary, chunked only (net/http
// drops the Content-Length before the handler sees the request); bad
// chunking is found only as the body streams, so the backend sees a
// request cut short and the client a 400.
func TestAmbiguousRequestsRefused(t *testing.T) {
	var reached, bothFramings atomic.Int64
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TransferEncoding) > 0 && r.Header.Get("Content-Length") != "" {
			bothFramings.Add(1)
		}
		if _, err := io.Copy(io.Discard, r.Body); err == nil && r.URL.Path != "/cl-te" {
			reached.Add(1) // a whole request arrived
		}
	}))
	// One failure would eject the backend: the client's errors must not
	// count.
	p := newPool(t, pool.Options{PassiveFailures: 1}, be.addr)
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: p}}, Default: "p"})
	for _, tt := range []struct {
		name, req string
		status    int
	}{
		{"content-length and chunked", "POST /cl-te HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 200},
		{"two content-lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
		{"bad chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n", 400},
		{"transfer-encoding not chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"connect", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", px.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, tt.req)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
		})
	}
	if n := reached.Load(); n != 0 {
		t.Errorf("%d ambiguous requests reached the backend whole", n)
	}
	if n := bothFramings.Load(); n != 0 {
		t.Errorf("%d requests reached the backend with both Content-Length and Transfer-Encoding", n)
	}
	px.log.waitRequest(t, "bad chunking", func(r map[string]any) bool { return r["status"] == 400.0 && r["end"] == "bad_request" })
	if st := p.Backends()[0].State(); st != pool.StateUp {
		t.Errorf("the backend is %v: blamed for the client's chunking", st)
	}
}

// TestSlowClientsAreClosed: a request head dribbling in (slowloris) is cut
// off after read_header_timeout, and an idle keep-alive connection after
// idle_timeout.
func TestSlowClientsAreClosed(t *testing.T) {
	be := startBackend(t, named("a"))
	p := newPool(t, pool.Options{}, be.addr)
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: p}}, Default: "p",
		ReadHeaderTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond})
	closedWithin := func(c net.Conn, d time.Duration) bool {
		c.SetReadDeadline(time.Now().Add(d))
		_, err := io.Copy(io.Discard, c)
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}

	slow, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	io.WriteString(slow, "GET / HTTP/1.1\r\nHost: x\r\n") // and never the blank line
	if !closedWithin(slow, 5*time.Second) {
		t.Error("a request head that never ends kept its connection open")
	}

	idle, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(idle)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if !closedWithin(idle, 5*time.Second) {
		t.Error("an idle keep-alive connection stayed open")
	}
}

// TestMaxConnectionsQueuesTheRest: past max_connections a new client is
// not served until an open connection closes.
func TestMaxConnectionsQueuesTheRest(t *testing.T) {
	be := startBackend(t, named("a"))
	p := newPool(t, pool.Options{}, be.addr)
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: p}}, Default: "p", MaxConnections: 1})
	exchange := func(c net.Conn, br *bufio.Reader, d time.Duration) error {
		c.SetDeadline(time.Now().Add(d))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	first, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if err := exchange(first, bufio.NewReader(first), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	second, err := net.Dial("tcp", px.addr) // the kernel completes the handshake
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	br := bufio.NewReader(second)
	// Asserting that nothing happens needs a window: 300 ms.
	if err := exchange(second, br, 300*time.Millisecond); err == nil {
		t.Fatal("a second connection was served while the first held the only slot")
	}
	first.Close()
	second.SetDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the queued connection was not served once the slot was free: %v", err)
	}
	resp.Body.Close()
}

func TestURLAndRequestsPerConnectionLimits(t *testing.T) {
	be := startBackend(t, named("a"))
	p := newPool(t, pool.Options{}, be.addr)
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: p}}, Default: "p",
		MaxURLBytes: 100, MaxRequestsPerConnection: 2})
	c, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	ask := func(target string) *http.Response {
		t.Helper()
		io.WriteString(c, "GET "+target+" HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := ask("/" + strings.Repeat("a", 100)); resp.StatusCode != 414 {
		t.Errorf("a 101-byte target: %d, want 414", resp.StatusCode)
	}
	if resp := ask("/2"); resp.StatusCode != 200 || resp.Close {
		t.Fatalf("second request: %d, close %v; want 200 on a connection kept open", resp.StatusCode, resp.Close)
	}
	if resp := ask("/3"); !resp.Close {
		t.Errorf("third request on a connection capped at 2 was answered without Connection: close")
	}
}
