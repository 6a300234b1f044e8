package pool

import (
	"math/rand/v2"
	"testing"
)

// TestExplainAgreesWithPick checks that Explain names the backend the next
// Pick returns: for every client under Maglev (both hash keys), and for
// the next connection in turn under round robin and least_conn.
func TestExplainAgreesWithPick(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"maglev client_ip", Options{Balance: Maglev, TableSize: 1009, Backends: backends(1, 2, 3, 1)}},
		{"maglev client_ip_port", Options{Balance: Maglev, HashKey: ClientIPPort, TableSize: 1009, Backends: backends(1, 1, 1)}},
		{"round_robin", Options{Balance: RoundRobin, Backends: backends(5, 1, 1)}},
		{"least_conn", Options{Balance: LeastConn, Backends: backends(1, 2, 1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustNew(t, tc.o)
			p.SetAdmin(p.Backends()[0], Drain) // excluded: never explained
			for i := range 1000 {
				c := randomClient(r)
				e := p.Explain(c)
				got := p.Pick(c, nil)
				if e.Ties > 1 {
					got.Acquire()
					continue // a tie is broken at random
				}
				if e.Backend != got {
					t.Fatalf("client %d %s: explained %v, picked %v", i, c, e.Backend, got)
				}
				if e.Backend == p.Backends()[0] {
					t.Fatalf("explained the draining backend")
				}
				if tc.o.Balance == LeastConn {
					got.Acquire() // loads change, and the explanation with them
				}
				if tc.o.Balance == Maglev && (e.Slot < 0 || e.Slot >= e.TableSize || !e.Deterministic) {
					t.Fatalf("slot %d of %d, deterministic %v", e.Slot, e.TableSize, e.Deterministic)
				}
			}
		})
	}
}

func TestExplainShares(t *testing.T) {
	p := mustNew(t, Options{Balance: Maglev, TableSize: 65537, Backends: backends(1, 3)})
	e := p.Explain(client)
	if len(e.SlotShare) != 2 || e.SlotShare[0]+e.SlotShare[1] != 65537 {
		t.Fatalf("shares %v", e.SlotShare)
	}
	// Weights 1:3 give about a quarter of the slots to the first.
	if q := float64(e.SlotShare[0]) / 65537; q < 0.24 || q > 0.26 {
		t.Errorf("first backend's share %.3f, want about 0.25", q)
	}
}

func TestExplainNoBackend(t *testing.T) {
	p := mustNew(t, Options{Backends: backends(1)})
	p.SetAdmin(p.Backends()[0], Maintenance)
	e := p.Explain(client)
	if e.Backend != nil || e.None == "" {
		t.Fatalf("explained %v, none %q", e.Backend, e.None)
	}
}
