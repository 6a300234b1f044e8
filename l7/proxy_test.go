package l7

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"sluice/internal/pool"
	"sluice/l7/route"
)

func TestForwardSetsHeadersFromRealClient(t *testing.T) {
	be := startBackend(t, named("a"))
	p := newPool(t, pool.Options{}, be.addr)
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: p}}, Default: "p"})
	c := client(t)

	// A client's forged forwarding headers are replaced, not appended to.
	resp, body := get(t, c, "GET", px.url+"/x?q=1", map[string]string{
		"X-Forwarded-For": "6.6.6.6", "Forwarded": "for=6.6.6.6", "X-Forwarded-Host": "evil", "X-Forwarded-Proto": "https",
		"Host": "app.example:8080",
	})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	for _, want := range []string{"a GET /x?q=1 ", "xff=127.0.0.1 ", `fwd=for=127.0.0.1;host="app.example:8080";proto=http `,
		"xfp=http ", "xfh=app.example:8080 "} {
		if !strings.Contains(body, want) {
			t.Errorf("backend saw %q, want %q in it", body, want)
		}
	}
	id := resp.Header.Get("X-Request-Id")
	if n := len(resp.Header.Values("X-Request-Id")); n != 1 {
		t.Errorf("%d X-Request-Id headers to the client, want 1", n)
	}
	if len(id) != 32 || !strings.HasSuffix(body, "id="+id) {
		t.Errorf("request id %q to client, backend saw %q", id, body)
	}
	rec := px.log.waitRequest(t, "GET /x", byPath("/x"))
	if rec["request_id"] != id || rec["status"] != 200.0 || rec["end"] != "ok" || rec["backend"] != be.addr.String() ||
		rec["route"] != "default" || rec["host"] != "app.example:8080" || rec["proto"] != "HTTP/1.1" {
		t.Errorf("log line %v", rec)
	}

	// A valid incoming ID is kept end to end; a bad one is replaced.
	resp, body = get(t, c, "GET", px.url+"/id", map[string]string{"X-Request-Id": "abc-123"})
	if resp.Header.Get("X-Request-Id") != "abc-123" || !strings.HasSuffix(body, "id=abc-123") {
		t.Errorf("kept id: header %q, backend saw %q", resp.Header.Get("X-Request-Id"), body)
	}
	resp, _ = get(t, c, "GET", px.url+"/id2", map[string]string{"X-Request-Id": "bad id\"with quotes"})
	if got := resp.Header.Get("X-Request-Id"); len(got) != 32 {
		t.Errorf("bad id answered with %q, want a new one", got)
	}
}

func TestTrustedProxyAppends(t *testing.T) {
	be := startBackend(t, named("a"))
	p := newPool(t, pool.Options{}, be.addr)
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: p}}, Default: "p",
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Routes: []route.Route{{Name: "office", Match: route.Match{Clients: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}},
			Kind: route.Respond, Status: 200, Body: "office"}},
	})
	c := client(t)
	_, body := get(t, c, "GET", px.url+"/t", map[string]string{
		"X-Forwarded-For": "203.0.113.9", "Forwarded": "for=203.0.113.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "front",
	})
	for _, want := range []string{"xff=203.0.113.9, 127.0.0.1 ", "fwd=for=203.0.113.9, for=127.0.0.1;", "xfp=https ", "xfh=front "} {
		if !strings.Contains(body, want) {
			t.Errorf("backend saw %q, want %q in it", body, want)
		}
	}
	rec := px.log.waitRequest(t, "GET /t", byPath("/t"))
	if rec["client"] != "203.0.113.9:0" || !strings.HasPrefix(rec["via"].(string), "127.0.0.1:") {
		t.Errorf("log line %v: want the forwarded client and the proxy as via", rec)
	}
	// Routing sees the real client too.
	if _, body := get(t, c, "GET", px.url+"/o", map[string]string{"X-Forwarded-For": "192.0.2.7"}); body != "office" {
		t.Errorf("client range route: got %q", body)
	}
}

func TestRoutes(t *testing.T) {
	api, web := startBackend(t, named("api")), startBackend(t, named("web"))
	ups := map[string]Upstream{
		"api": {Pool: newPool(t, pool.Options{Name: "api"}, api.addr)},
		"web": {Pool: newPool(t, pool.Options{Name: "web"}, web.addr)},
	}
	routes := []route.Route{
		{Name: "health", Match: route.Match{Path: "/healthz", PathExact: true}, Kind: route.Respond, Status: 200,
			Body: "ok\n", ContentType: "text/plain"},
		{Name: "plain", Match: route.Match{Host: "insecure.example"}, Kind: route.Redirect, HTTPS: true, Status: 301},
		{Name: "moved", Match: route.Match{Path: "/old"}, Kind: route.Redirect, Location: "http://new.example/", Status: 302},
		{Name: "admin", Match: route.Match{Path: "/admin"}, Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Pool: "web"},
		{Name: "ro", Match: route.Match{Path: "/ro"}, AllowMethods: []string{"GET", "HEAD"}, Pool: "web"},
		{Name: "api", Match: route.Match{Host: "*.example.com", Path: "/api"}, Pool: "api"},
		{Name: "canary", Match: route.Match{Header: "X-Canary", HeaderValue: "1"}, Pool: "api"},
		{Name: "site", Match: route.Match{Host: "www.example.com"}, Pool: "web"},
	}
	px := startProxy(t, &Server{Routes: routes, Upstreams: ups})
	c := client(t)
	tests := []struct {
		name, method, path string
		hdr                map[string]string
		status             int
		body, location     string
		end                string
	}{
		{"fixed response", "GET", "/healthz", nil, 200, "ok\n", "", "responded"},
		{"https upgrade", "GET", "/a?b=1", map[string]string{"Host": "insecure.example:8080"}, 301, "", "https://insecure.example/a?b=1", "redirect"},
		{"redirect", "GET", "/old/x", nil, 302, "", "http://new.example/", "redirect"},
		{"denied client", "GET", "/admin", nil, 403, "403 Forbidden\n", "", "denied"},
		{"dot-dot still denied", "GET", "/public/../admin/x", nil, 403, "403 Forbidden\n", "", "denied"},
		{"method not allowed", "POST", "/ro", nil, 405, "405 Method Not Allowed\n", "", "method_not_allowed"},
		{"method allowed", "GET", "/ro", map[string]string{"Host": "www.example.com"}, 200, "web GET /ro", "", "ok"},
		{"wildcard host and prefix", "GET", "/api/v1", map[string]string{"Host": "x.example.com"}, 200, "api GET /api/v1", "", "ok"},
		{"prefix is per segment", "GET", "/apix", map[string]string{"Host": "www.example.com"}, 200, "web GET /apix", "", "ok"},
		{"header value", "GET", "/c", map[string]string{"X-Canary": "1"}, 200, "api GET /c", "", "ok"},
		{"no route, no default", "GET", "/nowhere", nil, 404, "404 Not Found\n", "", "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, c, tt.method, px.url+tt.path, tt.hdr)
			if resp.StatusCode != tt.status || !strings.HasPrefix(body, tt.body) || resp.Header.Get("Location") != tt.location {
				t.Errorf("%d %q Location %q; want %d %q %q", resp.StatusCode, body, resp.Header.Get("Location"), tt.status, tt.body, tt.location)
			}
			if tt.status == 405 && resp.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow: %q", resp.Header.Get("Allow"))
			}
			id := resp.Header.Get("X-Request-Id")
			if n := len(resp.Header.Values("X-Request-Id")); n != 1 {
				t.Errorf("%d X-Request-Id headers to the client, want 1", n)
			}
			rec := px.log.waitRequest(t, tt.name, func(r map[string]any) bool { return r["request_id"] == id })
			if rec["end"] != tt.end || rec["status"] != float64(tt.status) {
				t.Errorf("log line %v, want end=%s status=%d", rec, tt.end, tt.status)
			}
		})
	}
}

func TestLeastConnCountsRequestsInFlight(t *testing.T) {
	release := make(chan struct{})
	holding := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/hold" {
				<-release
			}
			w.Write([]byte(name))
		})
	}
	a, b := startBackend(t, holding("a")), startBackend(t, holding("b"))
	p := newPool(t, pool.Options{Balance: pool.LeastConn}, a.addr, b.addr)
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: p}}, Default: "p"})
	c := client(t)
	held := make(chan struct{})
	go func() {
		// Not get: no t.Fatal outside the test's goroutine.
		if resp, err := c.Get(px.url + "/hold"); err == nil {
			resp.Body.Close()
		}
		close(held)
	}()
	bs := p.Backends()
	eventually(t, 10*time.Second, "a request held", func() bool { return bs[0].Active()+bs[1].Active() == 1 })
	free := "b"
	if bs[1].Active() == 1 {
		free = "a"
	}
	// A request in flight is a connection's worth of load: every new
	// request goes to the other backend while it lasts.
	for i := range 6 {
		if _, body := get(t, c, "GET", px.url+"/q", nil); body != free {
			t.Errorf("request %d went to %s, want %s (no request in flight)", i, body, free)
		}
	}
	close(release)
	<-held
}

func TestAffinityOnHeaderOrCookie(t *testing.T) {
	var addrs []netip.AddrPort
	for _, n := range []string{"a", "b", "c"} {
		addrs = append(addrs, startBackend(t, named(n)).addr)
	}
	p := newPool(t, pool.Options{Balance: pool.Maglev}, addrs...)
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: p}}, Routes: []route.Route{
		{Name: "h", Match: route.Match{Path: "/h"}, Pool: "p", HashHeader: "X-User"},
		{Name: "c", Match: route.Match{Path: "/c"}, Pool: "p", HashCookie: "sid"},
	}})
	c := client(t)
	backendOf := func(path string, hdr map[string]string) string {
		_, body := get(t, c, "GET", px.url+path, hdr)
		return body[:1]
	}
	// Every request comes from 127.0.0.1: hashed on the client address
	// they would all reach one backend.
	seen := map[string]bool{}
	for i := range 30 {
		user := fmt.Sprintf("user%d", i)
		first := backendOf("/h", map[string]string{"X-User": user})
		seen[first] = true
		for range 3 {
			if got := backendOf("/h", map[string]string{"X-User": user}); got != first {
				t.Fatalf("%s reached %s, then %s", user, first, got)
			}
		}
		if got := backendOf("/c", map[string]string{"Cookie": "a=1; sid=" + user}); got != first {
			t.Errorf("cookie sid=%s reached %s, header X-User %s", user, got, first)
		}
	}
	if len(seen) != 3 {
		t.Errorf("30 users reached backends %v, want all three", seen)
	}
}

func TestRouteRewrites(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "secret/1.0")
		w.Header().Set("X-Backend", "a")
		fmt.Fprintf(w, "%s host=%s env=%s debug=%q xfp=%s", r.URL.RequestURI(), r.Host, r.Header.Get("X-Env"),
			r.Header.Get("X-Debug"), r.Header.Get("X-Forwarded-Proto"))
	}))
	p := newPool(t, pool.Options{}, be.addr)
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: p}}, Routes: []route.Route{
		{Name: "api", Match: route.Match{Path: "/api"}, Pool: "p", Rewrite: route.Rewrite{
			StripPrefix: "/api", AddPrefix: "/v2", Host: "backend.internal",
			SetRequest: map[string]string{"X-Env": "prod", "X-Forwarded-Proto": "https"}, RemoveRequest: []string{"X-Debug"},
			SetResponse: map[string]string{"X-Frame-Options": "DENY"}, RemoveResponse: []string{"Server"},
		}},
		{Name: "root", Match: route.Match{Path: "/root"}, Pool: "p", Rewrite: route.Rewrite{StripPrefix: "/root"}},
	}})
	c := client(t)
	resp, body := get(t, c, "GET", px.url+"/api/users/a%2Fb?x=1", map[string]string{"X-Debug": "1"})
	if want := `/v2/users/a%2Fb?x=1 host=backend.internal env=prod debug="" xfp=https`; body != want {
		t.Errorf("backend saw %q, want %q", body, want)
	}
	if resp.Header.Get("Server") != "" || resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("X-Backend") != "a" {
		t.Errorf("response headers %v", resp.Header)
	}
	if _, body := get(t, c, "GET", px.url+"/root", nil); !strings.HasPrefix(body, "/ host=") {
		t.Errorf("stripping the whole path: backend saw %q, want /", body)
	}
}
