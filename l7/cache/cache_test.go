package cache

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// funcOrigin answers the cache's forwarded requests in process.
type funcOrigin func(*http.Request) *http.Response

func (f funcOrigin) RoundTrip(r *http.Request) (*http.Response, error)  { return f(r), nil }
func (f funcOrigin) Background(r *http.Request) (*http.Response, error) { return f(r), nil }

func response(r *http.Request, status int, h http.Header, body []byte) *http.Response {
	h.Set("Content-Length", strconv.Itoa(len(body)))
	return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)), Request: r}
}

// fetch asks c for url as a client would and reads the whole answer.
func fetch(t testing.TB, c *Cache, o Origin, url string, h http.Header) (*http.Response, Outcome, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, out, err := c.RoundTrip(c.Key(req), req, o)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, out, body
}

// TestFloodOfKeysStaysUnderMaxSize stores far more distinct objects than
// fit: the store's weight stays under MaxSize, and so does the memory the
// process holds beyond what it held before, give or take the store's own
// tables.
func TestFloodOfKeysStaysUnderMaxSize(t *testing.T) {
	const maxSize = 4 << 20
	body := bytes.Repeat([]byte("x"), 4<<10)
	origin := funcOrigin(func(r *http.Request) *http.Response {
		return response(r, 200, http.Header{"Cache-Control": {"max-age=3600"}}, body)
	})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := New(Options{MaxSize: maxSize})
	defer c.Close()
	const n = 20000 // 80 MiB of bodies
	for i := range n {
		fetch(t, c, origin, fmt.Sprintf("http://example.com/obj/%d", i), nil)
	}
	c.store.CleanUp()
	st := c.Stats()
	if st.Bytes > maxSize {
		t.Errorf("store weighs %d bytes, over max_size %d", st.Bytes, maxSize)
	}
	if st.Evictions < n/2 || st.Stored != n {
		t.Errorf("stored %d, evicted %d of %d", st.Stored, st.Evictions, n)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("%d objects of %d bytes stored into %d bytes: %d kept weighing %d, heap grew %d KiB",
		n, len(body), maxSize, st.Objects, st.Bytes, grew>>10)
	if grew > 2*maxSize {
		t.Errorf("heap grew %d bytes for a %d-byte cache", grew, maxSize)
	}
}

func TestDecide(t *testing.T) {
	now := time.Now()
	obj := func(age, lifetime time.Duration, cc string) *object {
		return &object{responseTime: now, initialAge: age, lifetime: lifetime,
			cc: parseControl(http.Header{"Cache-Control": {cc}}), swr: window(parseControl(http.Header{"Cache-Control": {cc}}).staleWhileRevalidate, 0)}
	}
	c := New(Options{})
	defer c.Close()
	for _, tc := range []struct {
		name string
		req  string
		o    *object
		want decision
	}{
		{"fresh", "", obj(10*time.Second, time.Minute, ""), serve},
		{"stale", "", obj(2*time.Minute, time.Minute, ""), revalidate},
		{"request no-cache", "no-cache", obj(0, time.Minute, ""), revalidate},
		{"response no-cache", "", obj(0, time.Minute, "no-cache"), revalidate},
		{"request max-age older", "max-age=5", obj(10*time.Second, time.Minute, ""), revalidate},
		{"request min-fresh", "min-fresh=55", obj(10*time.Second, time.Minute, ""), revalidate},
		{"max-stale allows", "max-stale=120", obj(2*time.Minute, time.Minute, ""), serve},
		{"max-stale any", "max-stale", obj(time.Hour, time.Minute, ""), serve},
		{"must-revalidate beats max-stale", "max-stale", obj(2*time.Minute, time.Minute, "must-revalidate"), revalidate},
		{"s-maxage beats max-stale", "max-stale", obj(2*time.Minute, time.Minute, "s-maxage=60"), revalidate},
		{"stale-while-revalidate", "", obj(70*time.Second, time.Minute, "stale-while-revalidate=30"), serveStale},
		{"past stale-while-revalidate", "", obj(100*time.Second, time.Minute, "stale-while-revalidate=30"), revalidate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.decide(requestControl(http.Header{"Cache-Control": {tc.req}}), tc.o, now); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}

func TestSingleRange(t *testing.T) {
	for _, tc := range []struct {
		h         string
		lo, hi    int64
		ok, unsat bool
	}{
		{"bytes=0-4", 0, 5, true, false},
		{"bytes=5-", 5, 10, true, false},
		{"bytes=-3", 7, 10, true, false},
		{"bytes=8-100", 8, 10, true, false},
		{"bytes=10-", 0, 0, false, true},
		{"bytes=0-1,3-4", 0, 0, false, false},
		{"items=0-1", 0, 0, false, false},
		{"bytes=4-2", 0, 0, false, false},
	} {
		lo, hi, ok := singleRange(tc.h, 10)
		if ok != tc.ok || ok && (lo != tc.lo || hi != tc.hi) || (lo < 0) != tc.unsat {
			t.Errorf("%q: %d-%d %v", tc.h, lo, hi, ok)
		}
	}
}

// TestPurge removes one URI (all its variants) or a prefix.
func TestPurge(t *testing.T) {
	origin := funcOrigin(func(r *http.Request) *http.Response {
		return response(r, 200, http.Header{"Cache-Control": {"max-age=60"}, "Vary": {"Accept"}}, []byte(r.URL.Path))
	})
	c := New(Options{})
	defer c.Close()
	for _, u := range []string{"http://example.com/a", "http://example.com/img/1", "http://example.com/img/2"} {
		fetch(t, c, origin, u, nil)
		fetch(t, c, origin, u, http.Header{"Accept": {"text/html"}})
	}
	if _, out, _ := fetch(t, c, origin, "http://example.com/a", nil); out != Hit {
		t.Fatalf("not stored: %v", out)
	}
	if n := c.Purge("http://EXAMPLE.com/a", false); n != 1 {
		t.Errorf("purged %d URIs, want 1", n)
	}
	if n := c.Purge("http://example.com/img/", true); n != 2 {
		t.Errorf("purged %d by prefix, want 2", n)
	}
	for _, u := range []string{"http://example.com/a", "http://example.com/img/1"} {
		if _, out, _ := fetch(t, c, origin, u, http.Header{"Accept": {"text/html"}}); out != Miss {
			t.Errorf("%s after purge: %v", u, out)
		}
	}
}

// TestIncompleteBodyIsNotStored stores nothing from a body cut short.
func TestIncompleteBodyIsNotStored(t *testing.T) {
	origin := funcOrigin(func(r *http.Request) *http.Response {
		resp := response(r, 200, http.Header{"Cache-Control": {"max-age=60"}}, []byte("0123456789"))
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader([]byte("01234")), errReader{}))
		return resp
	})
	c := New(Options{})
	defer c.Close()
	fetch(t, c, origin, "http://example.com/cut", nil)
	if st := c.Stats(); st.Stored != 0 {
		t.Errorf("a cut-off body was stored")
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

// TestFillBudgetBoundsBuffering starts more concurrent misses of large
// objects than the budget for bodies being stored holds: those past it
// stream through unstored.
func TestFillBudgetBoundsBuffering(t *testing.T) {
	body := bytes.Repeat([]byte("z"), 200<<10)
	origin := funcOrigin(func(r *http.Request) *http.Response {
		return response(r, 200, http.Header{"Cache-Control": {"max-age=60"}}, body)
	})
	c := New(Options{MaxSize: 1 << 20, MaxObject: 256 << 10}) // budget 256 KiB: one body at a time
	defer c.Close()
	var open []*http.Response
	for i := range 3 {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://example.com/big/%d", i), nil)
		resp, _, err := c.RoundTrip(c.Key(req), req, origin)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, resp) // not read yet: all three are being stored at once
	}
	for _, resp := range open {
		if b, _ := io.ReadAll(resp.Body); len(b) != len(body) {
			t.Errorf("client got %d bytes, want %d", len(b), len(body))
		}
		resp.Body.Close()
	}
	if st := c.Stats(); st.Stored != 1 {
		t.Errorf("stored %d of 3 concurrent 200 KiB misses with a 256 KiB budget, want 1", st.Stored)
	}
	if n := c.filling.Load(); n != 0 {
		t.Errorf("%d bytes still reserved after every body ended", n)
	}
}
