package l7

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/internal/pool"
	"sluice/l7/route"
)

// fastOnly skips a test of the fast path's own behaviour in a run with
// -nethttp, where net/http answers differently (and as well).
func fastOnly(t *testing.T) {
	t.Helper()
	if *netHTTPOnly {
		t.Skip("tests the fast path; -nethttp turns it off")
	}
}

// rawConn opens a client connection to the proxy with a deadline.
func rawConn(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func readResp(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && method != "expect" {
		resp, err = http.ReadResponse(br, &http.Request{Method: method}) // past interim ones
	}
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return resp, string(b)
}

// TestFastPathOrHandOff: the heads the fast path serves itself, and those
// it gives to net/http with the bytes already read; each gets the answer
// net/http would give.
func TestFastPathOrHandOff(t *testing.T) {
	fastOnly(t)
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s body=%q", r.Proto, r.Method, r.URL.RequestURI(), b)
	}))
	p := newPool(t, pool.Options{}, be.addr)
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: p}}, Default: "p"})
	for _, tt := range []struct {
		name, req string
		handOff   bool
		status    int
		body      string
	}{
		{"plain GET", "GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n", false, 200, `HTTP/1.1 GET /a?b=1 body=""`},
		{"POST with a length", "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", false, 200, `body="abc"`},
		{"chunked POST", "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n", false, 200, `body="abcde"`},
		{"escaped path", "GET /a%20b HTTP/1.1\r\nHost: x\r\n\r\n", false, 200, `GET /a%20b body`},
		{"HTTP/1.0", "GET /old HTTP/1.0\r\nHost: x\r\n\r\n", true, 200, `GET /old`},
		{"bare LF", "GET /lf HTTP/1.1\nHost: x\n\n", true, 200, `GET /lf`},
		{"obs-fold", "GET /f HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  2\r\n\r\n", true, 200, "GET /f"},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", true, 400, ""},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", true, 400, ""},
		{"space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", true, 400, ""},
		{"absolute form", "GET http://x/abs HTTP/1.1\r\nHost: x\r\n\r\n", true, 200, `GET /abs`},
		{"expect", "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nok", true, 100, ""},
		{"bad escape", "GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n", true, 400, ""},
		{"signed length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\na", true, 400, ""},
		{"h2c upgrade", "GET /u HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n", true, 200, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := px.s.fast.handoffs.Load()
			c, br := rawConn(t, px.addr)
			io.WriteString(c, tt.req)
			method, _, _ := strings.Cut(tt.req, " ")
			if tt.status == 100 {
				method = "expect"
			}
			resp, body := readResp(t, br, method)
			if resp.StatusCode != tt.status || !strings.Contains(body, tt.body) {
				t.Errorf("%d %q, want %d and %q in it", resp.StatusCode, body, tt.status, tt.body)
			}
			if got := px.s.fast.handoffs.Load() - before; got != 0 != tt.handOff {
				t.Errorf("%d hand-offs, want hand-off %v", got, tt.handOff)
			}
		})
	}
}

// TestFastPathPipelined: requests sent in one write are answered in order
// on one connection, each forwarded on its own.
func TestFastPathPipelined(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s", r.URL.Path, b)
	}))
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: newPool(t, pool.Options{}, be.addr)}}, Default: "p"})
	c, br := rawConn(t, px.addr)
	io.WriteString(c, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"+
		"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"+
		"POST /3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n"+
		"GET /4 HTTP/1.1\r\nHost: x\r\n\r\n")
	for i, want := range []string{"/1 ", "/2 hi", "/3 z", "/4 "} {
		method := "GET"
		if i == 1 || i == 2 {
			method = "POST"
		}
		if _, body := readResp(t, br, method); body != want {
			t.Errorf("response %d: %q, want %q", i+1, body, want)
		}
	}
}

// rawBackend answers each request with the canned response its path
// names, and counts the connections it accepted. A response ending in
// "CLOSE" is sent without that word and the connection closed.
type rawBackend struct {
	addr     netip.AddrPort
	accepted atomic.Int64
	closed   atomic.Int64
}

func startCannedBackend(t *testing.T, answers map[string]string) *rawBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rb := &rawBackend{addr: ln.Addr().(*net.TCPAddr).AddrPort()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			rb.accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer rb.closed.Add(1)
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					a := answers[req.URL.Path]
					closing := strings.HasSuffix(a, "CLOSE")
					io.WriteString(c, strings.TrimSuffix(a, "CLOSE"))
					if closing {
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return rb
}

// TestFastPathResponseFramings: every way a response body can be framed
// reaches the client whole, and the connection goes on when it can.
func TestFastPathResponseFramings(t *testing.T) {
	fastOnly(t) // net/http turns a close-delimited body into chunks
	rb := startCannedBackend(t, map[string]string{
		"/length":    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Request-Id: theirs\r\nKeep-Alive: timeout=5\r\n\r\nhello",
		"/chunked":   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n",
		"/close":     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the endCLOSE",
		"/http10":    "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nokCLOSE",
		"/head":      "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
		"/nocontent": "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
		"/notmod":    "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
		"/early":     "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nmain",
		"/both":      "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
	})
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: newPool(t, pool.Options{}, rb.addr)}}, Default: "p"})
	c, br := rawConn(t, px.addr)
	for _, tt := range []struct {
		method, path, body string
		closes             bool
	}{
		{"GET", "/length", "hello", false},
		{"GET", "/chunked", "hello world", false},
		{"HEAD", "/head", "", false},
		{"GET", "/nocontent", "", false},
		{"GET", "/notmod", "", false},
		{"GET", "/early", "main", false},
		{"GET", "/both", "ok", false},
		{"GET", "/http10", "ok", false},
		{"GET", "/close", "until the end", true},
	} {
		io.WriteString(c, tt.method+" "+tt.path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, body := readResp(t, br, tt.method)
		if body != tt.body || resp.Close != tt.closes {
			t.Errorf("%s %s: %q close=%v, want %q close=%v", tt.method, tt.path, body, resp.Close, tt.body, tt.closes)
		}
		if id := resp.Header.Values("X-Request-Id"); len(id) != 1 || id[0] == "theirs" {
			t.Errorf("%s: X-Request-Id %q, want one of ours", tt.path, id)
		}
		if resp.Header.Get("Keep-Alive") != "" {
			t.Errorf("%s: hop-by-hop Keep-Alive passed on", tt.path)
		}
		if tt.path == "/chunked" && resp.Trailer.Get("X-Sum") != "11" {
			t.Errorf("trailers %v, want X-Sum: 11", resp.Trailer)
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after a close-delimited response: %v, want the connection closed", err)
	}
}

// TestFastPathStaleBackendConnection: a kept backend connection that the
// backend closed while it was idle is replaced without an error to the
// client and without blaming the backend.
func TestFastPathStaleBackendConnection(t *testing.T) {
	// The backend closes each connection after its response, without
	// saying so: the proxy keeps it and finds it closed on reuse.
	rb := startCannedBackend(t, map[string]string{"/": "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokCLOSE"})
	p := newPool(t, pool.Options{PassiveFailures: 1}, rb.addr)
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: p}}, Default: "p"})
	c := client(t)
	for i := range 5 {
		if resp, body := get(t, c, "GET", px.url+"/", nil); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
		// Let the backend's FIN arrive before the next request.
		eventually(t, 5*time.Second, "backend closed", func() bool { return rb.accepted.Load() == int64(i+1) || i == 0 })
	}
	if st := p.Backends()[0].State(); st != pool.StateUp {
		t.Errorf("backend %v after its kept connections closed", st)
	}
}

// TestFastPathChunkedBodyLimits: a chunked body over max_body_bytes is
// cut off with 413, bad chunking answered 400; neither reaches the
// backend whole nor blames it.
func TestFastPathChunkedBodyLimits(t *testing.T) {
	fastOnly(t) // net/http reads on after a 413 rather than closing
	var whole atomic.Int64
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err == nil {
			whole.Add(1)
		}
	}))
	p := newPool(t, pool.Options{PassiveFailures: 1}, be.addr)
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: p}}, Default: "p", MaxBodyBytes: 10})
	for _, tt := range []struct {
		name, req string
		status    int
	}{
		{"over the limit in the head's read", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n", 413},
		{"size overflow", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000001\r\n", 400},
		{"no CRLF after data", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", 400},
		{"bare LF after size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\nab\r\n0\r\n\r\n", 400},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, br := rawConn(t, px.addr)
			io.WriteString(c, tt.req)
			if resp, _ := readResp(t, br, "POST"); resp.StatusCode != tt.status || !resp.Close {
				t.Errorf("%d close=%v, want %d and the connection closed", resp.StatusCode, resp.Close, tt.status)
			}
		})
	}
	// Streamed past the first read: cut off as it goes.
	c, br := rawConn(t, px.addr)
	io.WriteString(c, "POST /stream HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
	// A window for the head to be read alone, before any chunk: the
	// body then comes wholly from later reads (this once hung).
	time.Sleep(50 * time.Millisecond)
	io.WriteString(c, "5\r\nhello\r\n")
	io.WriteString(c, "6\r\n world\r\n0\r\n\r\n")
	if resp, _ := readResp(t, br, "POST"); resp.StatusCode != 413 {
		t.Errorf("streamed chunked body of 11 bytes: %d, want 413", resp.StatusCode)
	}
	if n := whole.Load(); n != 0 {
		t.Errorf("%d refused bodies reached the backend whole", n)
	}
	if st := p.Backends()[0].State(); st != pool.StateUp {
		t.Errorf("backend %v: blamed for clients' bodies", st)
	}
}

// TestFastPathHeaderRules: hop-by-hop fields, those the client's
// Connection names, and forged forwarding fields never reach the backend.
func TestFastPathHeaderRules(t *testing.T) {
	seen := make(chan http.Header, 1)
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen <- r.Header.Clone() }))
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: newPool(t, pool.Options{}, be.addr)}},
		Routes: []route.Route{{Name: "r", Pool: "p", Rewrite: route.Rewrite{SetRequest: map[string]string{"X-Env": "prod"}}}}})
	c, br := rawConn(t, px.addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\n"+
		"Proxy-Authorization: Basic eDp5\r\nTE: trailers\r\nX-Forwarded-For: 6.6.6.6\r\nX-Env: dev\r\nX-Keep: yes\r\n\r\n")
	readResp(t, br, "GET")
	h := <-seen
	for _, gone := range []string{"X-Secret", "Keep-Alive", "Proxy-Authorization"} {
		if v := h.Get(gone); v != "" {
			t.Errorf("%s: %q reached the backend", gone, v)
		}
	}
	// TE: trailers says the client takes trailers, which pass through.
	if h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("Te") != "trailers" || h.Get("X-Env") != "prod" || h.Get("X-Keep") != "yes" {
		t.Errorf("backend saw %v", h)
	}
}

// TestFastPathStaleConnectionChecked: a POST, which cannot be sent twice,
// is not sent on a kept connection the backend closed while it sat idle:
// one idle for staleAfter or longer is checked first.
func TestFastPathStaleConnectionChecked(t *testing.T) {
	fastOnly(t)
	defer func(d time.Duration) { staleAfter = d }(staleAfter)
	staleAfter = 0 // check every kept connection
	rb := startCannedBackend(t, map[string]string{"/": "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokCLOSE"})
	p := newPool(t, pool.Options{PassiveFailures: 1}, rb.addr)
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: p}}, Default: "p"})
	c := client(t)
	for i := range 3 {
		resp, err := c.Post(px.url+"/", "text/plain", strings.NewReader("once"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("POST %d: %d %q", i, resp.StatusCode, body)
		}
		eventually(t, 5*time.Second, "the backend closed its connection", func() bool { return rb.closed.Load() == int64(i+1) })
	}
	if st := p.Backends()[0].State(); st != pool.StateUp {
		t.Errorf("backend %v after its kept connections closed", st)
	}
}

// TestFastPathSlowBody: a response body that comes slowly (a stream) is
// passed on whole however long it takes: the wait for the head's
// deadline must not cut it.
func TestFastPathSlowBody(t *testing.T) {
	defer func(d time.Duration) { abortPoll = d }(abortPoll)
	abortPoll = 20 * time.Millisecond
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := range 3 {
			fmt.Fprintf(w, "part%d;", i)
			http.NewResponseController(w).Flush()
			time.Sleep(60 * time.Millisecond) // a slow stream, three abortPolls a part
		}
	}))
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: newPool(t, pool.Options{}, be.addr)}}, Default: "p"})
	if resp, body := get(t, client(t), "GET", px.url+"/stream", nil); resp.StatusCode != 200 || body != "part0;part1;part2;" {
		t.Errorf("%d %q, want the whole stream", resp.StatusCode, body)
	}
}

// TestFastPathShutdownClosesIdle: at Shutdown an idle keep-alive
// connection is closed at once, not at the drain's deadline, and one with
// a request in flight gets its answer with Connection: close.
func TestFastPathShutdownClosesIdle(t *testing.T) {
	release, arrived := make(chan struct{}), make(chan struct{})
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(arrived)
			<-release
		}
		w.Write([]byte("done"))
	}))
	p := newPool(t, pool.Options{}, be.addr)
	s := &Server{Upstreams: map[string]Upstream{"p": {Pool: p}}, Default: "p", Logger: slog.New(slog.DiscardHandler)}
	if *netHTTPOnly {
		s.NetHTTPOnly = true
	}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve([]*net.TCPListener{ln}) }()
	idle, ibr := rawConn(t, ln.Addr().String())
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	readResp(t, ibr, "GET")
	busy, bbr := rawConn(t, ln.Addr().String())
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-arrived // in flight: a request still in its socket would be reset by the drain

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(ctx) }()
	if _, err := ibr.ReadByte(); err != io.EOF {
		t.Errorf("idle connection at Shutdown: %v, want it closed", err)
	}
	close(release)
	if resp, body := readResp(t, bbr, "GET"); body != "done" || !resp.Close {
		t.Errorf("request in flight at Shutdown: %q close=%v, want its answer and Connection: close", body, resp.Close)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v, want the drain to end before its deadline", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// TestFastPathHandOffKeepsSlot: a connection handed to net/http holds its
// max_connections slot until it closes, and gives it back then.
func TestFastPathHandOffKeepsSlot(t *testing.T) {
	be := startBackend(t, named("a"))
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: newPool(t, pool.Options{}, be.addr)}},
		Default: "p", MaxConnections: 1})
	first, fbr := rawConn(t, px.addr)
	io.WriteString(first, "GET /old HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n") // handed off
	readResp(t, fbr, "GET")
	first.Close()
	second, sbr := rawConn(t, px.addr)
	io.WriteString(second, "GET /new HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := readResp(t, sbr, "GET"); !strings.HasPrefix(body, "a GET /new") {
		t.Errorf("second connection after the handed-off one closed: %q", body)
	}
}
