package udp

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"sluice/internal/pool"
)

// flood sends one datagram from each of n fresh source ports to p, as a
// flood of spoofed sources does, and waits until p has read them all. The
// kernel may give a port out twice, so a few flows may get two datagrams.
func flood(t *testing.T, p *proxy, n int) {
	t.Helper()
	before := p.Stats().FromClients
	for range n {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(p.addr))
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("flood"))
		c.Close()
	}
	eventually(t, 10*time.Second, "the flood to be read", func() bool {
		return p.Stats().FromClients >= before+uint64(n)
	})
}

// TestFullTableEvictsIdleSession fills the session table with a flood of
// source ports: a new client is answered once the flood's sessions have
// been idle for the floor, each answer taking the place of one of them,
// and the cap still holds.
func TestFullTableEvictsIdleSession(t *testing.T) {
	const limit = 40
	b := startBackend(t, "b1", "127.0.0.1", 0)
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, b), MaxSessions: limit,
		EvictIdle: 300 * time.Millisecond}, "127.0.0.1:0")
	fds := countFDs()
	start := time.Now() // no flood session was active before this
	flood(t, p, 10*limit)
	if st := p.Stats(); st.Sessions != limit {
		t.Fatalf("stats %+v after the flood, want %d sessions (the cap)", st, limit)
	}

	// The new client retries, as resolvers do, until it is answered.
	c := dialFrom(t, "127.0.0.2", p.addr)
	buf := make([]byte, 64)
	var got string
	eventually(t, 10*time.Second, "the new client to be answered", func() bool {
		c.Write([]byte("hello"))
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := c.Read(buf)
		got = string(buf[:max(n, 0)])
		return err == nil
	})
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("answered %v after the flood began, before the 300ms floor", d)
	}
	if got != "b1 hello" {
		t.Fatalf("reply %q, want %q", got, "b1 hello")
	}
	st := p.Stats()
	if st.Sessions > limit || st.Evicted < 1 {
		t.Fatalf("stats %+v, want at most %d sessions and an eviction", st, limit)
	}
	rec := p.log.waitEnd(t, EndEvicted)
	if rec["backend"] != b.addr.String() || !strings.HasPrefix(rec["client"].(string), "127.0.0.1:") {
		t.Errorf("evicted session's record %v, want a flood flow's, to %s", rec, b.addr)
	}
	if !strings.Contains(p.log.text(), `"msg":"udp session cap reached, evicting idle sessions for new flows"`) {
		t.Error("no warning for the eviction")
	}

	// A second flood, after the floor: it churns through the idle
	// sessions, but never past the cap.
	flood(t, p, 10*limit)
	st = p.Stats()
	if st.Sessions > limit {
		t.Fatalf("%d sessions after the second flood, cap %d", st.Sessions, limit)
	}
	// The client, the cap's sockets and a few more of Go's own.
	if n := countFDs() - fds; n > limit+5 {
		t.Errorf("%d more fds than before the floods, want at most %d", n, limit+5)
	}
	if w := strings.Count(p.log.text(), `evicting idle sessions`); w > 10 {
		t.Errorf("%d eviction warnings for %d evictions, want a few", w, st.Evicted)
	}
}

// TestYoungFloodIsRefused floods the table faster than its sessions reach
// the floor: new flows are dropped rather than evicting, so the flood
// cannot churn through sessions, and the cap bounds memory.
func TestYoungFloodIsRefused(t *testing.T) {
	for _, tt := range []struct {
		name  string
		floor time.Duration
	}{
		{"floor not reached", time.Hour},
		{"eviction off", -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := startBackend(t, "b1", "127.0.0.1", 0)
			p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, b), MaxSessions: 10,
				EvictIdle: tt.floor}, "127.0.0.1:0")
			flood(t, p, 200)
			c := dialFrom(t, "127.0.0.2", p.addr)
			c.Write([]byte("x"))
			// Every datagram is either sent on through one of the ten
			// sessions or dropped for the cap.
			eventually(t, 5*time.Second, "the drops to be counted", func() bool {
				st := p.Stats()
				return st.FromClients == 201 && st.ToBackends+st.DroppedSessionCap == 201
			})
			if !silent(c, 50*time.Millisecond) {
				t.Fatal("a new flow got through a full table of young sessions")
			}
			if st := p.Stats(); st.Sessions != 10 || st.Evicted != 0 || st.DroppedSessionCap < 180 {
				t.Fatalf("stats %+v, want 10 sessions, no eviction and the rest dropped", st)
			}
		})
	}
}

// dialFrom opens a client socket on ip connected to addr, closed when
// the test ends: a flow apart from any of a flood from 127.0.0.1.
func dialFrom(t *testing.T, ip string, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)),
		net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// loopOf sends msg from c to p and returns the index of the loop (socket)
// that read it.
func loopOf(t *testing.T, p *proxy, c *net.UDPConn, msg string) int {
	t.Helper()
	read := func() []uint64 {
		p.mu.Lock()
		defer p.mu.Unlock()
		var n []uint64
		for _, l := range p.loops {
			n = append(n, l.stats.fromClients.Load())
		}
		return n
	}
	before := read()
	c.Write([]byte(msg))
	which := -1
	eventually(t, 5*time.Second, "the datagram to be read", func() bool {
		for i, n := range read() {
			if n > before[i] {
				which = i
				return true
			}
		}
		return false
	})
	return which
}

// TestFullTableLendsAcrossSockets fills the table from one socket (a
// table of one session) and sends a new flow to the other: that loop has
// no session of its own to evict, so the first one lends it a place once
// its session has been idle for the floor.
func TestFullTableLendsAcrossSockets(t *testing.T) {
	b := startBackend(t, "b1", "127.0.0.1", 0)
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, b), MaxSessions: 1,
		EvictIdle: 200 * time.Millisecond}, "127.0.0.1:0")
	first := dial(t, p.addr)
	full := loopOf(t, p, first, "x")
	if got := reply(t, first, 5*time.Second); got != "b1 x" {
		t.Fatalf("reply %q", got)
	}
	// New client ports until one reaches the other socket.
	var c *net.UDPConn
	for range 100 {
		c = dial(t, p.addr)
		if loopOf(t, p, c, "y") != full {
			break
		}
		c = nil
	}
	if c == nil {
		t.Fatal("100 client ports all reached one socket")
	}
	eventually(t, 10*time.Second, "the client on the other socket to be answered", func() bool {
		c.Write([]byte("y"))
		return !silent(c, 100*time.Millisecond)
	})
	st := p.Stats()
	if st.Sessions != 1 || st.Evicted != 1 {
		t.Fatalf("stats %+v, want the one session, in place of the evicted one", st)
	}
	rec := p.log.waitEnd(t, EndEvicted)
	if rec["client"] != first.LocalAddr().String() {
		t.Errorf("evicted %v, want the first client's session", rec["client"])
	}
}
