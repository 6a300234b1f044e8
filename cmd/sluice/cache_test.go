package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"sluice/internal/admin"
)

// TestCacheRouteMetricsAndPurge runs sluice with a cached route and the
// admin listener: a hit is counted on /metrics (promtool clean), the
// access log says cache=hit, and a purge through the API makes the next
// request a miss.
func TestCacheRouteMetricsAndPurge(t *testing.T) {
	promtool := need(t, "promtool", "prometheus")
	backend := assetServer(t)
	addr, adminAddr := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`
[admin]
bind = %q
token = "t"
[caches.assets]
max_size = "16MiB"
max_object = "1MiB"
key_query = ["v"]
[pools.web]
[[pools.web.backends]]
address = %q
[listeners.web]
bind = %q
protocol = "http"
[[listeners.web.routes]]
path = "/static/"
pool = "web"
cache = "assets"
`, adminAddr, backend, addr)
	p := startSluice(t, nil, "-c", writeFile(t, cfg))
	p.waitOutput(t, "admin listening")
	get := func(path string) (string, string) { return getCached(t, addr, path) }
	if body, _ := get("/static/app.js?v=1&utm=a"); body != "asset /static/app.js #1" {
		t.Fatalf("first: %q", body)
	}
	if body, status := get("/static/app.js?utm=b&v=1"); body != "asset /static/app.js #1" || !strings.Contains(status, "hit") {
		t.Fatalf("second, other tracking parameter: %q, Cache-Status %q", body, status)
	}
	eventually(t, 5*time.Second, "cache=hit in the access log", func() bool { return strings.Contains(p.out.String(), "cache=hit") })

	api := adminClient{t: t, base: "http://" + adminAddr, token: "t"}
	body := api.get("/metrics", nil)
	if got := metric(body, "sluice_cache_requests_total", `cache="assets"`, `outcome="hit"`); got != 1 {
		t.Errorf("hits on /metrics: %v", got)
	}
	if got := metric(body, "sluice_cache_objects", `cache="assets"`); got != 1 {
		t.Errorf("objects on /metrics: %v", got)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	code, out := api.do(http.MethodPost, "/api/v1/caches/assets/purge", `{"url": "http://`+addr+`/static/", "prefix": true}`,
		"Content-Type", "application/json")
	if code != http.StatusOK || !strings.Contains(string(out), `"purged": 1`) {
		t.Fatalf("purge: %d %s", code, out)
	}
	if body, _ := get("/static/app.js?v=1"); body != "asset /static/app.js #2" {
		t.Errorf("after the purge: %q", body)
	}
	code, out = api.do(http.MethodPost, "/api/v1/caches/nope/purge", `{"url": "http://x/"}`, "Content-Type", "application/json")
	if code != http.StatusNotFound {
		t.Errorf("purge of an unknown cache: %d %s", code, out)
	}
	var list []admin.CacheJSON
	api.get("/api/v1/caches", &list)
	if len(list) != 1 || list[0].Name != "assets" || list[0].Purged != 1 || list[0].Hits != 1 {
		t.Errorf("GET /api/v1/caches: %+v", list)
	}
}

// assetServer is a backend whose responses may be cached for 10 minutes
// and say how many requests it has answered.
func assetServer(t *testing.T) string {
	t.Helper()
	var asked atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprintf(w, "asset %s #%d", r.URL.Path, asked.Add(1))
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String()
}

// getCached GETs path from addr and returns the body and Cache-Status.
func getCached(t *testing.T, addr, path string) (string, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return b.String(), resp.Header.Get("Cache-Status")
}

// TestReloadKeepsUnchangedCache reloads a configuration: a cache whose
// table did not change keeps its objects; one whose table changed starts
// empty.
func TestReloadKeepsUnchangedCache(t *testing.T) {
	backend := assetServer(t)
	addr := freePort(t)
	cfg := func(size string) string {
		return fmt.Sprintf(`
[caches.c]
max_size = %q
[pools.web]
[[pools.web.backends]]
address = %q
[listeners.web]
bind = %q
protocol = "http"
[[listeners.web.routes]]
pool = "web"
cache = "c"
`, size, backend, addr)
	}
	path := writeFile(t, cfg("16MiB"))
	p := startSluice(t, nil, "-c", path)
	p.waitOutput(t, "listening")
	getCached(t, addr, "/x")
	os.WriteFile(path, []byte(cfg("16MiB")+"\n# touched\n"), 0o644)
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitCount(t, "configuration reloaded", 1)
	if body, status := getCached(t, addr, "/x"); body != "asset /x #1" || !strings.Contains(status, "hit") {
		t.Errorf("after a reload that kept the cache: %q, Cache-Status %q", body, status)
	}
	os.WriteFile(path, []byte(cfg("32MiB")), 0o644)
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitCount(t, "configuration reloaded", 2)
	if body, _ := getCached(t, addr, "/x"); body != "asset /x #2" {
		t.Errorf("after a reload that changed the cache: %q, want a new cache's miss", body)
	}
}
