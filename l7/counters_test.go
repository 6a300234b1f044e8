package l7

import (
	"testing"
	"time"

	"sluice/internal/pool"
)

// The counters follow the requests: per route, backend, status and end,
// with their bytes and durations, matching the log lines.
func TestCountersMatchTheLog(t *testing.T) {
	be := startBackend(t, named("a"))
	p := newPool(t, pool.Options{}, be.addr)
	ctr := NewCounters()
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: p}}, Default: "p", Counters: ctr})
	c := client(t)
	for range 3 {
		if resp, _ := get(t, c, "GET", px.url+"/x", nil); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	eventually(t, 5*time.Second, "three request lines", func() bool { return len(px.log.requests()) == 3 })
	var n, out uint64
	ctr.Requests(func(k RequestKey, rn, _, rout, _ uint64) {
		if k != (RequestKey{Route: "default", Backend: be.addr, Status: 200, End: EndOK}) {
			t.Errorf("counted %+v", k)
		}
		n, out = n+rn, out+rout
	})
	var logOut float64
	for _, r := range px.log.requests() {
		logOut += r["bytes_out"].(float64)
	}
	if n != 3 || float64(out) != logOut || ctr.Duration().Count != 3 || ctr.Current() != 0 {
		t.Errorf("counted %d requests, %d bytes out (log %v), %d durations, %d current", n, out, logOut, ctr.Duration().Count, ctr.Current())
	}
}
