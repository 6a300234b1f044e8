package l4

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"sluice/internal/pool"
)

// weightedPool builds a pool whose i-th backend has weight weights[i].
func weightedPool(t *testing.T, b pool.Balance, addrs []string, weights []int) *pool.Pool {
	t.Helper()
	o := pool.Options{Name: "w", Balance: b}
	for i, a := range addrs {
		o.Backends = append(o.Backends, pool.BackendOptions{Addr: netip.MustParseAddrPort(a), Weight: weights[i]})
	}
	p, err := pool.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// threeBackends starts greeters named a, b and c.
func threeBackends(t *testing.T) (addrs []string, names []string) {
	for _, n := range []string{"a", "b", "c"} {
		addrs = append(addrs, startBackend(t, greeter(n)).addr)
		names = append(names, n)
	}
	return addrs, names
}

func TestRoundRobinFollowsWeights(t *testing.T) {
	addrs, _ := threeBackends(t)
	p := startProxy(t, &Server{Pool: weightedPool(t, pool.RoundRobin, addrs, []int{3, 1, 1})})
	count := map[string]int{}
	var seq []string
	for range 50 {
		c := dial(t, p.addr, "")
		name := readLine(t, c)
		c.Close()
		count[name]++
		seq = append(seq, name)
	}
	if count["a"] != 30 || count["b"] != 10 || count["c"] != 10 {
		t.Fatalf("50 connections split %v, want a:30 b:10 c:10", count)
	}
	// Smooth: a weight-1 backend never takes two connections in a row.
	for i := 1; i < len(seq); i++ {
		if seq[i] != "a" && seq[i] == seq[i-1] {
			t.Fatalf("backend %s picked twice in a row: %v", seq[i], seq)
		}
	}
}

func TestLeastConnCountsLiveConnections(t *testing.T) {
	addrs, _ := threeBackends(t)
	p := startProxy(t, &Server{Pool: weightedPool(t, pool.LeastConn, addrs, []int{1, 1, 2})})
	held := map[string][]*net.TCPConn{}
	open := func(n int) {
		for range n {
			c := dial(t, p.addr, "")
			name := readLine(t, c)
			held[name] = append(held[name], c)
		}
	}
	open(8)
	if len(held["a"]) != 2 || len(held["b"]) != 2 || len(held["c"]) != 4 {
		t.Fatalf("8 held connections split a:%d b:%d c:%d, want 2 2 4", len(held["a"]), len(held["b"]), len(held["c"]))
	}
	// Closing c's connections makes it the least loaded by far: the next
	// four must all go there.
	for _, c := range held["c"] {
		c.Close()
	}
	held["c"] = nil
	eventually(t, 5*time.Second, "c's connections to end", func() bool {
		n := 0
		for _, r := range p.log.conns() {
			if r["end"] == EndClientClosed.String() {
				n++
			}
		}
		return n == 4
	})
	open(4)
	if len(held["c"]) != 4 {
		t.Fatalf("after c's connections closed, 4 new ones split a:%d b:%d c:%d, want all on c",
			len(held["a"])-2, len(held["b"])-2, len(held["c"]))
	}
}

func TestMaglevSameClientSameBackend(t *testing.T) {
	addrs, _ := threeBackends(t)
	reversed := slices.Clone(addrs)
	slices.Reverse(reversed)
	// Two sluice instances whose pools list the backends in different
	// orders must agree, as ECMP'd instances do.
	p1 := startProxy(t, &Server{Pool: newPool(t, pool.Maglev, 0, addrs...)})
	p2 := startProxy(t, &Server{Pool: newPool(t, pool.Maglev, 0, reversed...)})
	used := map[string]bool{}
	for i := 2; i < 22; i++ {
		ip := netip.AddrFrom4([4]byte{127, 0, 0, byte(i)}).String()
		first := ""
		for _, p := range []*proxy{p1, p2, p1, p2} {
			c := dial(t, p.addr, ip)
			got := readLine(t, c)
			c.Close()
			if first == "" {
				first = got
			} else if got != first {
				t.Fatalf("client %s reached %s and then %s", ip, first, got)
			}
		}
		used[first] = true
	}
	if len(used) < 2 {
		t.Fatalf("20 client addresses all hashed to %v", used)
	}
}

func TestRandomReachesEveryBackend(t *testing.T) {
	addrs, _ := threeBackends(t)
	p := startProxy(t, &Server{Pool: newPool(t, pool.Random, 0, addrs...)})
	count := map[string]int{}
	for range 60 {
		c := dial(t, p.addr, "")
		count[readLine(t, c)]++
		c.Close()
	}
	// Missing a backend in 60 draws has odds around 1e-10.
	if len(count) != 3 {
		t.Fatalf("60 connections reached only %v", count)
	}
}
