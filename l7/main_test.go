package l7

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/internal/pool"
	"sluice/l7/route"
)

// netHTTPOnly runs the package's tests against net/http alone, without
// the HTTP/1.1 fast path: go test ./l7 -args -nethttp. CI runs both.
var netHTTPOnly = flag.Bool("nethttp", false, "serve with net/http only (Server.NetHTTPOnly)")

// TestMain fails the package if goroutines or fds outlive the tests:
// every connection, handler and transport must be closed and joined.
func TestMain(m *testing.M) {
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		ln.Close()
	}
	base := runtime.NumGoroutine()
	fds := countFDs()
	code := m.Run()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		os.Exit(code) // the fuzzing engine leaves its signal goroutine running
	}
	if code == 0 {
		if err := waitFor(10*time.Second, func() bool { return runtime.NumGoroutine() <= base }); err != nil {
			buf := make([]byte, 1<<20)
			fmt.Fprintf(os.Stderr, "goroutine leak: %d running, %d at start\n%s", runtime.NumGoroutine(), base,
				buf[:runtime.Stack(buf, true)])
			code = 1
		}
	}
	if code == 0 {
		if err := waitFor(10*time.Second, func() bool { runtime.GC(); return countFDs() <= fds }); err != nil {
			fmt.Fprintf(os.Stderr, "fd leak: %d open, %d at start\n", countFDs(), fds)
			code = 1
		}
	}
	os.Exit(code)
}

func countFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

func waitFor(d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if waitFor(d, cond) != nil {
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

// logSink collects log lines as decoded JSON records.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// requests returns the "request" records logged so far.
func (l *logSink) requests() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(l.buf.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "request" {
			out = append(out, rec)
		}
	}
	return out
}

// waitRequest waits for a request record for which match holds.
func (l *logSink) waitRequest(t *testing.T, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	var got map[string]any
	eventually(t, 10*time.Second, "log line: "+what, func() bool {
		for _, r := range l.requests() {
			if match(r) {
				got = r
				return true
			}
		}
		return false
	})
	return got
}

// byPath matches records for a path.
func byPath(p string) func(map[string]any) bool {
	return func(r map[string]any) bool { return r["path"] == p }
}

// backend is a Go net/http server on loopback.
type backend struct {
	addr netip.AddrPort
	srv  *http.Server
}

func startBackend(t testing.TB, h http.Handler) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	b := &backend{addr: ln.Addr().(*net.TCPAddr).AddrPort(), srv: &http.Server{Handler: h, Protocols: protocols}}
	done := make(chan struct{})
	go func() { defer close(done); b.srv.Serve(ln) }()
	t.Cleanup(func() { b.srv.Close(); <-done })
	return b
}

// named answers every request with its name and what it saw.
func named(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		fmt.Fprintf(w, "%s %s %s xff=%s fwd=%s xfp=%s xfh=%s id=%s",
			name, r.Method, r.URL.RequestURI(), r.Header.Get("X-Forwarded-For"), r.Header.Get("Forwarded"),
			r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Request-Id"))
	})
}

func deadPort(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	return a
}

func newPool(t testing.TB, o pool.Options, addrs ...netip.AddrPort) *pool.Pool {
	t.Helper()
	if o.Name == "" {
		o.Name = "p"
	}
	for _, a := range addrs {
		o.Backends = append(o.Backends, pool.BackendOptions{Addr: a})
	}
	o.Logger = slog.New(slog.DiscardHandler)
	p, err := pool.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// proxyUnderTest is a running Server on loopback.
type proxyUnderTest struct {
	s    *Server
	url  string
	addr string
	log  *logSink
}

// startProxy serves s on a loopback socket; cleanup shuts it down and
// checks that every backend was released.
func startProxy(t testing.TB, s *Server) *proxyUnderTest {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	sink := &logSink{}
	if s.Logger == nil {
		s.Logger = slog.New(slog.NewJSONHandler(sink, nil))
	}
	if s.Name == "" {
		s.Name = "web"
	}
	if *netHTTPOnly {
		s.NetHTTPOnly = true
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve([]*net.TCPListener{ln}) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		for _, u := range s.Upstreams {
			for _, b := range u.Pool.Backends() {
				if n := b.Active(); n != 0 {
					t.Errorf("backend %s left with %d requests counted", b, n)
				}
			}
		}
	})
	a := ln.Addr().String()
	return &proxyUnderTest{s: s, url: "http://" + a, addr: a, log: sink}
}

// client returns an HTTP/1.1 client that closes its idle connections at
// the end of the test.
func client(t *testing.T) *http.Client {
	tr := &http.Transport{Proxy: nil}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, method, url string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp, b.String()
}

func forwardAll(p string) []route.Route { return []route.Route{{Name: "all", Pool: p}} }
