package udp

import (
	"net/netip"
	"testing"
	"time"

	"sluice/internal/pool"
)

// The counters follow the sessions: live while they last, then their end,
// bytes and duration, matching the log lines.
func TestCountersMatchTheLog(t *testing.T) {
	b := startBackend(t, "b", "127.0.0.1", 0)
	ctr := NewCounters()
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, b), Counters: ctr, Responses: 1}, "127.0.0.1:0")
	var bc *BackendCounters
	live := dial(t, p.addr)
	ask(t, live, "hold") // ends at its one response
	for range 3 {
		ask(t, dial(t, p.addr), "one")
	}
	eventually(t, 5*time.Second, "four session lines", func() bool { return len(p.log.sessions()) == 4 })
	ctr.Backends(func(a netip.AddrPort, x *BackendCounters) {
		if a == b.addr {
			bc = x
		}
	})
	if bc == nil {
		t.Fatal("no counters for the backend")
	}
	var logIn, logOut float64
	for _, r := range p.log.sessions() {
		logIn += r["bytes_in"].(float64)
		logOut += r["bytes_out"].(float64)
	}
	in, out := bc.Bytes()
	if float64(in) != logIn || float64(out) != logOut {
		t.Errorf("counted in=%d out=%d, the log says %v %v", in, out, logIn, logOut)
	}
	ends := map[End]uint64{}
	bc.Ends(func(e End, n uint64) { ends[e] = n })
	if ends[EndResponses] != 4 || bc.Live() != 0 || ctr.Duration().Count != 4 {
		t.Errorf("ends %v, live %d, %d durations; want 4 responses, 0 live, 4", ends, bc.Live(), ctr.Duration().Count)
	}
}
