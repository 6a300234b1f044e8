package l7

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"sluice/internal/access"
	"sluice/internal/pool"
	"sluice/l7/route"
)

func TestRetryAfterConnectFailure(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write([]byte(r.Method + " " + string(b)))
	}))
	p := newPool(t, pool.Options{Retries: 1}, deadPort(t), be.addr)
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: p}}, Default: "p"})
	c := client(t)
	for i := range 4 {
		// A POST with a body is retried too: a refused connect sent
		// nothing and read none of the body.
		resp, err := c.Post(px.url+"/r", "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "POST payload" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	rec := px.log.waitRequest(t, "a retried request", func(r map[string]any) bool { return r["retries"] == 1.0 })
	if rec["backend"] != be.addr.String() || rec["end"] != "ok" || rec["bytes_in"] != 7.0 {
		t.Errorf("log line %v", rec)
	}
}

func TestRetryIdempotentAfterReset(t *testing.T) {
	// A backend that accepts and resets at once: a failure before any
	// response byte, after the request was sent.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	reset := ln.Addr().(*net.TCPAddr).AddrPort()
	good := startBackend(t, named("good"))
	ups := map[string]Upstream{
		"both":  {Pool: newPool(t, pool.Options{Name: "both", Retries: 1}, reset, good.addr)},
		"reset": {Pool: newPool(t, pool.Options{Name: "reset", Retries: 1}, reset)},
	}
	px := startProxy(t, &Server{Upstreams: ups, Routes: routesByPath("both", "reset")})
	c := client(t)
	for range 4 {
		if resp, body := get(t, c, "GET", px.url+"/both", nil); resp.StatusCode != 200 {
			t.Fatalf("GET: %d %q", resp.StatusCode, body)
		}
	}
	px.log.waitRequest(t, "a GET retried after a reset", func(r map[string]any) bool {
		return r["path"] == "/both" && r["retries"] == 1.0 && r["backend"] == good.addr.String()
	})
	// A POST is not idempotent: one attempt, then 502.
	before := accepted.Load()
	resp, err := c.Post(px.url+"/reset", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 || accepted.Load()-before != 1 {
		t.Errorf("POST: %d after %d connections to the resetting backend; want 502 after 1",
			resp.StatusCode, accepted.Load()-before)
	}
	rec := px.log.waitRequest(t, "POST reset", byPath("/reset"))
	// The reset may beat the connect's completion (connect_failed) or
	// come after the request was written (backend_reset).
	if rec["end"] != "backend_reset" && rec["end"] != "connect_failed" {
		t.Errorf("log line %v, want end=backend_reset or connect_failed", rec)
	}
}

func TestErrorStatuses(t *testing.T) {
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	slow := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	down := newPool(t, pool.Options{Name: "down"}, deadPort(t))
	down.SetAdmin(down.Backends()[0], pool.Maintenance)
	ups := map[string]Upstream{
		"refused": {Pool: newPool(t, pool.Options{Name: "refused"}, deadPort(t))},
		"down":    {Pool: down},
		"slow":    {Pool: newPool(t, pool.Options{Name: "slow"}, slow.addr)},
	}
	px := startProxy(t, &Server{Upstreams: ups, ResponseTimeout: 200 * time.Millisecond, Routes: routesByPath("refused", "down", "slow")})
	c := client(t)
	for _, tt := range []struct {
		path   string
		status int
		end    string
	}{
		{"/refused", 502, "connect_failed"},
		{"/down", 503, "no_backend"},
		{"/slow", 504, "backend_timeout"},
	} {
		resp, body := get(t, c, "GET", px.url+tt.path, nil)
		if resp.StatusCode != tt.status || body != resp.Status+"\n" {
			t.Errorf("%s: %d %q, want %d with a small body", tt.path, resp.StatusCode, body, tt.status)
		}
		if rec := px.log.waitRequest(t, tt.path, byPath(tt.path)); rec["end"] != tt.end {
			t.Errorf("%s: log line %v, want end=%s", tt.path, rec, tt.end)
		}
	}
}

func TestClientAbortIsNotBadGateway(t *testing.T) {
	started := make(chan struct{})
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done() // the proxy must cancel the backend request
	}))
	p := newPool(t, pool.Options{}, be.addr)
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: p}}, Default: "p"})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", px.url+"/gone", nil)
	errc := make(chan error, 1)
	c := client(t)
	go func() {
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("client: %v", err)
	}
	rec := px.log.waitRequest(t, "/gone", byPath("/gone"))
	if rec["end"] != "client_aborted" || rec["status"] != 499.0 || rec["error"] != nil {
		t.Errorf("log line %v, want end=client_aborted status=499 and no error", rec)
	}
}

func TestLimits(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			return
		}
		w.Write([]byte(strings.Repeat("x", int(n%10))))
	}))
	p := newPool(t, pool.Options{}, be.addr)
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: p}}, Default: "p",
		MaxBodyBytes: 100, MaxHeaderBytes: 4096})
	c := client(t)
	// Known length over the limit: refused before the backend is asked.
	resp, err := c.Post(px.url+"/cl", "text/plain", strings.NewReader(strings.Repeat("a", 101)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("Content-Length 101: %d, want 413", resp.StatusCode)
	}
	// Chunked: cut off as it streams.
	resp, err = c.Post(px.url+"/chunked", "text/plain", io.MultiReader(strings.NewReader(strings.Repeat("a", 500))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("chunked 500 bytes: %d, want 413", resp.StatusCode)
	}
	if rec := px.log.waitRequest(t, "/chunked", byPath("/chunked")); rec["end"] != "body_too_large" {
		t.Errorf("log line %v", rec)
	}
	resp, err = c.Post(px.url+"/ok", "text/plain", strings.NewReader(strings.Repeat("a", 100)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("100 bytes: %d, want 200", resp.StatusCode)
	}
	// Header flood: 431 from net/http's own limit. It reads up to about
	// 8 KiB beyond MaxHeaderBytes (4 KiB of slop in its read limit, and
	// its 4 KiB read buffer), so 12300 bytes is the smallest sure 431.
	resp, _ = get(t, c, "GET", px.url+"/h", map[string]string{"X-Big": strings.Repeat("b", 12300)})
	if resp.StatusCode != 431 {
		t.Errorf("12300-byte header: %d, want 431", resp.StatusCode)
	}
}

func TestPassiveChecksCountStatuses(t *testing.T) {
	bad := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	p := newPool(t, pool.Options{PassiveFailures: 2}, bad.addr)
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: p}}, Default: "p", FailStatuses: []int{503}})
	c := client(t)
	for range 2 {
		if resp, _ := get(t, c, "GET", px.url+"/", nil); resp.StatusCode != 503 {
			t.Fatalf("status %d, want the backend's 503", resp.StatusCode)
		}
	}
	if st := p.Backends()[0].State(); st == pool.StateUp {
		t.Errorf("backend %v after two 503s with passive_failures = 2", st)
	}
}

// routesByPath routes /NAME to pool NAME for each name.
func routesByPath(names ...string) []route.Route {
	var rs []route.Route
	for _, n := range names {
		rs = append(rs, route.Route{Name: n, Match: route.Match{Path: "/" + n}, Pool: n})
	}
	return rs
}

// TestCutOffResponseIsAborted: a backend that dies mid-body must not look
// like a complete (shorter) response to the client.
func TestCutOffResponseIsAborted(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.Write([]byte("only part"))
		http.NewResponseController(w).Flush()
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}))
	p := newPool(t, pool.Options{}, be.addr)
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: p}}, Default: "p"})
	// The error may come with the head (still buffered when the copy
	// failed) or with the body.
	resp, err := client(t).Get(px.url + "/cut")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Error("client read a cut-off response to its end without an error")
	}
	if rec := px.log.waitRequest(t, "/cut", byPath("/cut")); rec["end"] != "backend_reset" {
		t.Errorf("log line %v, want end=backend_reset", rec)
	}
}

// TestRequestRatePerClient: each real client (here told apart by a
// trusted proxy's X-Forwarded-For) gets its burst, then 429 with
// Retry-After, logged rate_limited, while another client is served.
func TestRequestRatePerClient(t *testing.T) {
	be := startBackend(t, named("a"))
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: newPool(t, pool.Options{}, be.addr)}},
		Default: "p", RequestRate: access.Rate{N: 1, Per: time.Minute}, RequestBurst: 2,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	c := client(t)
	from := func(ip string) map[string]string { return map[string]string{"X-Forwarded-For": ip} }
	for i := range 2 {
		if resp, _ := get(t, c, "GET", px.url+"/burst", from("192.0.2.1")); resp.StatusCode != 200 {
			t.Fatalf("request %d of the burst: %d", i, resp.StatusCode)
		}
	}
	resp, _ := get(t, c, "GET", px.url+"/over", from("192.0.2.1"))
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "60" {
		t.Errorf("past the burst: %d Retry-After %q, want 429 and 60", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if rec := px.log.waitRequest(t, "/over", byPath("/over")); rec["end"] != "rate_limited" || rec["status"] != 429.0 {
		t.Errorf("log line %v", rec)
	}
	if resp, _ := get(t, c, "GET", px.url+"/other", from("192.0.2.2")); resp.StatusCode != 200 {
		t.Errorf("another client: %d, want 200", resp.StatusCode)
	}
}

// TestRequestRatePerRoute: a route's own rate applies to its requests
// only; another route of the listener is not limited by it.
func TestRequestRatePerRoute(t *testing.T) {
	be := startBackend(t, named("a"))
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: newPool(t, pool.Options{}, be.addr)}},
		Routes: []route.Route{
			{Name: "login", Match: route.Match{Path: "/login"}, Pool: "p", RequestRate: access.Rate{N: 1, Per: time.Second}},
			{Name: "rest", Pool: "p"},
		}})
	c := client(t)
	if resp, _ := get(t, c, "GET", px.url+"/login", nil); resp.StatusCode != 200 {
		t.Fatalf("first login: %d", resp.StatusCode)
	}
	resp, _ := get(t, c, "GET", px.url+"/login", nil)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("second login: %d Retry-After %q, want 429 and 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	for i := range 3 {
		if resp, _ := get(t, c, "GET", px.url+"/other", nil); resp.StatusCode != 200 {
			t.Errorf("other route, request %d: %d", i, resp.StatusCode)
		}
	}
	if rec := px.log.waitRequest(t, "a refused login", func(r map[string]any) bool { return r["status"] == 429.0 }); rec["route"] != "login" || rec["end"] != "rate_limited" {
		t.Errorf("log line %v", rec)
	}
}
