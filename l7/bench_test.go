package l7

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"

	"sluice/internal/pool"
	"sluice/l7/cache"
	"sluice/l7/route"
)

// BenchmarkKeepAlive forwards GETs over one keep-alive client connection
// to a minimal HTTP/1.1 backend. The client and the backend allocate
// nothing per request, so allocs/op are the proxy's (net/http's and
// ours). Profile with -cpuprofile and -memprofile.
func BenchmarkKeepAlive(b *testing.B) {
	for _, tc := range []struct {
		name string
		log  *slog.Logger
	}{
		{"log=off", slog.New(slog.DiscardHandler)},
		{"log=text", slog.New(slog.NewTextHandler(io.Discard, nil))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			be := startRawBackend(b)
			p := startProxy(b, &Server{Routes: forwardAll("p"), Logger: tc.log,
				Upstreams: map[string]Upstream{"p": {Pool: newPool(b, pool.Options{}, be)}}})
			c, err := net.Dial("tcp", p.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			r := bufio.NewReader(c)
			req := []byte("GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n\r\n")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				if err := discardResponse(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// discardResponse reads one response with a Content-Length body.
func discardResponse(r *bufio.Reader) error {
	n := 0
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	_, err := r.Discard(n)
	return err
}

// startRawBackend answers every request head on a connection with 200 and
// 64 bytes, without net/http, until the test ends.
func startRawBackend(t testing.TB) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 64\r\n\r\n" + string(bytes.Repeat([]byte("x"), 64)))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				r := bufio.NewReader(c)
				for {
					for {
						line, err := r.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
					}
					if _, err := c.Write(resp); err != nil {
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
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// TestForwardAllocs bounds the allocations per forwarded keep-alive
// request (the client and backend here allocate none). On the fast path
// there are none: heads are parsed in place, the request's state lives in
// its connection, and buffers are pooled. Through net/http about 75; the
// bound catches ours creeping back: the copy buffer's box, a context and
// request copy per request, header values one slice each (it was 91).
func TestForwardAllocs(t *testing.T) {
	for _, tt := range []struct {
		name        string
		netHTTPOnly bool
		max         float64
	}{
		{"fast path", false, 0},
		{"net/http", true, 80},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.netHTTPOnly && *netHTTPOnly {
				t.Skip("-nethttp")
			}
			be := startRawBackend(t)
			p := startProxy(t, &Server{Routes: forwardAll("p"), Logger: slog.New(slog.DiscardHandler), NetHTTPOnly: tt.netHTTPOnly,
				Upstreams: map[string]Upstream{"p": {Pool: newPool(t, pool.Options{}, be)}}})
			c, err := net.Dial("tcp", p.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			r := bufio.NewReader(c)
			req := []byte("GET /bench HTTP/1.1\r\nHost: bench\r\n\r\n")
			var failed error
			n := testing.AllocsPerRun(300, func() {
				if _, err := c.Write(req); err != nil {
					failed = err
				}
				if err := discardResponse(r); err != nil {
					failed = err
				}
			})
			if failed != nil {
				t.Fatal(failed)
			}
			if max := tt.max + raceAllocs; n > max {
				t.Errorf("%.1f allocations per request, want at most %.0f", n, max)
			}
			t.Logf("%.1f allocations per request", n)
		})
	}
}

// BenchmarkCachedHit is BenchmarkKeepAlive on a route with a cache whose
// object is fresh: every request is a hit, and the backend is asked once.
func BenchmarkCachedHit(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: max-age=3600\r\nContent-Length: 64\r\n\r\n" + string(bytes.Repeat([]byte("x"), 64)))
	var wg sync.WaitGroup
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					for {
						line, err := r.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
					}
					c.Write(resp)
				}
			})
		}
	})
	be := ln.Addr().(*net.TCPAddr).AddrPort()
	c := cache.New(cache.Options{})
	b.Cleanup(c.Close)
	p := startProxy(b, &Server{Routes: []route.Route{{Name: "cached", Pool: "p", Cache: "c"}}, Logger: slog.New(slog.DiscardHandler),
		Caches:    map[string]*cache.Cache{"c": c},
		Upstreams: map[string]Upstream{"p": {Pool: newPool(b, pool.Options{}, be)}}})
	conn, err := net.Dial("tcp", p.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	req := []byte("GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		if err := discardResponse(r); err != nil {
			b.Fatal(err)
		}
	}
	if st := c.Stats(); st.Misses != 1 {
		b.Errorf("%d misses, want 1", st.Misses)
	}
}
