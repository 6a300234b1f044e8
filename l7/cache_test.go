package l7

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/internal/pool"
	"sluice/l7/cache"
	"sluice/l7/route"
)

// fakeClock is a clock a test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// cachedProxy serves one route with a cache in front of h.
func cachedProxy(t *testing.T, h http.Handler, o cache.Options) (*proxyUnderTest, *cache.Cache) {
	t.Helper()
	b := startBackend(t, h)
	c := cache.New(o)
	t.Cleanup(c.Close)
	p := startProxy(t, &Server{
		Routes:    []route.Route{{Name: "cached", Pool: "p", Cache: "c"}},
		Upstreams: map[string]Upstream{"p": {Pool: newPool(t, pool.Options{}, b.addr)}},
		Caches:    map[string]*cache.Cache{"c": c},
	})
	return p, c
}

func TestCacheServesHitsAndLogsOutcome(t *testing.T) {
	var n atomic.Int64
	p, _ := cachedProxy(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("ETag", `"v1"`)
		fmt.Fprintf(w, "body %d", n.Add(1))
	}), cache.Options{})
	c := client(t)
	resp, body := get(t, c, "GET", p.url+"/a", nil)
	if body != "body 1" || !strings.Contains(resp.Header.Get("Cache-Status"), "fwd=uri-miss; stored") {
		t.Fatalf("first: %q, Cache-Status %q", body, resp.Header.Get("Cache-Status"))
	}
	p.log.waitRequest(t, "the miss", func(r map[string]any) bool { return r["path"] == "/a" && r["cache"] == "miss" })
	resp, body = get(t, c, "GET", p.url+"/a", nil)
	if body != "body 1" || !strings.HasPrefix(resp.Header.Get("Cache-Status"), "sluice; hit; ttl=") || resp.Header.Get("Age") == "" {
		t.Fatalf("second: %q, Cache-Status %q, Age %q", body, resp.Header.Get("Cache-Status"), resp.Header.Get("Age"))
	}
	if resp.Header.Get(requestIDHeader) == "" {
		t.Error("a hit has no request ID")
	}
	p.log.waitRequest(t, "the hit", func(r map[string]any) bool { return r["path"] == "/a" && r["cache"] == "hit" })
	resp, _ = get(t, c, "HEAD", p.url+"/a", nil)
	if resp.Header.Get("Content-Length") != "6" || !strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
		t.Errorf("HEAD from the stored GET: Content-Length %q, Cache-Status %q", resp.Header.Get("Content-Length"), resp.Header.Get("Cache-Status"))
	}
	resp, body = get(t, c, "GET", p.url+"/a", map[string]string{"Range": "bytes=2-3"})
	if resp.StatusCode != http.StatusPartialContent || body != "dy" {
		t.Errorf("range from the stored GET: %d %q", resp.StatusCode, body)
	}
	resp, _ = get(t, c, "GET", p.url+"/a", map[string]string{"If-None-Match": `"v1"`})
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match on a hit: %d, want 304", resp.StatusCode)
	}
	if got := n.Load(); got != 1 {
		t.Errorf("backend asked %d times, want 1", got)
	}
	get(t, c, "POST", p.url+"/a", nil)
	_, body = get(t, c, "GET", p.url+"/a", nil)
	if body != "body 3" {
		t.Errorf("after a POST the stored response was served: %q", body)
	}
}

// TestCacheCoalescesExpiredHotKey expires a hot object under 200
// concurrent clients: one request goes to the backend, the others wait
// for it and are answered from what it stored.
func TestCacheCoalescesExpiredHotKey(t *testing.T) {
	const clients = 200
	// The clock starts 11 s back and moves to now: the backend's Date
	// headers then agree with it after the expiry.
	clock := &fakeClock{now: time.Now().Add(-11 * time.Second)}
	var n atomic.Int64
	release := make(chan struct{})
	var once sync.Once
	p, c := cachedProxy(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) > 1 {
			<-release // the refetch waits until every client is in
		}
		w.Header().Set("Cache-Control", "max-age=10")
		fmt.Fprint(w, "hot")
	}), cache.Options{Now: clock.Now, CoalesceTimeout: time.Minute})
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: clients}}
	t.Cleanup(hc.CloseIdleConnections)
	get(t, client(t), "GET", p.url+"/hot", nil)
	clock.Add(11 * time.Second) // expired
	var wg sync.WaitGroup
	var ok atomic.Int64
	for range clients {
		wg.Go(func() {
			resp, err := hc.Get(p.url + "/hot")
			if err != nil {
				t.Errorf("GET: %v", err)
				return
			}
			var b strings.Builder
			_, err = fmt.Fprint(&b, readAll(resp))
			if err == nil && resp.StatusCode == 200 && b.String() == "hot" {
				ok.Add(1)
			}
		})
	}
	eventually(t, 30*time.Second, "199 clients waiting for the one fetching", func() bool {
		return c.Stats().Waiting == clients-1 && n.Load() == 2
	})
	once.Do(func() { close(release) })
	wg.Wait()
	if got := n.Load(); got != 2 {
		t.Errorf("backend asked %d times, want 2 (the first fill and one refetch)", got)
	}
	if ok.Load() != clients {
		t.Errorf("%d of %d clients got the object", ok.Load(), clients)
	}
}

func readAll(resp *http.Response) string {
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 512)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

// TestCacheStaleWhileRevalidateAndIfError serves a stale object at once
// while one background request revalidates it, then, with the backend
// failing, serves it stale within stale-if-error. Every backend the
// background request took is released (startProxy checks).
func TestCacheStaleWhileRevalidateAndIfError(t *testing.T) {
	clock := &fakeClock{now: time.Now().Add(-time.Hour)}
	var n atomic.Int64
	var failing atomic.Bool
	p, c := cachedProxy(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=60, stale-if-error=600")
		w.Header().Set("Date", clock.Now().UTC().Format(http.TimeFormat))
		fmt.Fprintf(w, "v%d", n.Add(1))
	}), cache.Options{Now: clock.Now})
	hc := client(t)
	get(t, hc, "GET", p.url+"/s", nil)
	clock.Add(30 * time.Second) // stale, within stale-while-revalidate
	resp, body := get(t, hc, "GET", p.url+"/s", nil)
	if body != "v1" || !strings.Contains(resp.Header.Get("Cache-Status"), "detail=stale-while-revalidate") {
		t.Fatalf("stale answer: %q, Cache-Status %q", body, resp.Header.Get("Cache-Status"))
	}
	eventually(t, 10*time.Second, "the background revalidation to store v2", func() bool {
		return c.Stats().Stored == 2
	})
	if _, body = get(t, hc, "GET", p.url+"/s", nil); body != "v2" {
		t.Errorf("after the background revalidation: %q, want v2", body)
	}
	failing.Store(true)
	clock.Add(5 * time.Minute) // past stale-while-revalidate, within stale-if-error
	resp, body = get(t, hc, "GET", p.url+"/s", nil)
	if resp.StatusCode != 200 || body != "v2" || !strings.Contains(resp.Header.Get("Cache-Status"), "detail=stale-if-error") {
		t.Errorf("backend failing: %d %q, Cache-Status %q", resp.StatusCode, body, resp.Header.Get("Cache-Status"))
	}
	p.log.waitRequest(t, "a stale answer logged", func(r map[string]any) bool { return r["cache"] == "stale" })
}
