package udp

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"sluice/internal/pool"
)

func TestRepliesAndLogsOneLine(t *testing.T) {
	b := startBackend(t, "b1", "127.0.0.1", 0)
	p := startProxy(t, &Server{Name: "dns", Pool: newPool(t, pool.RoundRobin, b),
		SessionTimeout: 200 * time.Millisecond}, "127.0.0.1:0")
	c := dial(t, p.addr)
	for i := range 3 {
		msg := fmt.Sprintf("hello %d", i)
		if got := ask(t, c, msg); got != "b1 "+msg {
			t.Fatalf("reply %q, want %q", got, "b1 "+msg)
		}
	}
	rec := p.log.waitEnd(t, EndIdleTimeout)
	want := map[string]any{
		"listener":      "dns",
		"client":        c.LocalAddr().String(),
		"backend":       b.addr.String(),
		"datagrams_in":  float64(3),
		"bytes_in":      float64(3 * len("hello 0")),
		"datagrams_out": float64(3),
		"bytes_out":     float64(3 * len("b1 hello 0")),
	}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("log %s = %v, want %v (record %v)", k, rec[k], v, rec)
		}
	}
	if d, _ := rec["duration"].(float64); time.Duration(d) < 200*time.Millisecond {
		t.Errorf("duration %v, want at least the 200ms timeout", rec["duration"])
	}
	if n := len(p.log.sessions()); n != 1 {
		t.Errorf("%d session lines, want 1", n)
	}
	st := p.Stats()
	if st.Sessions != 0 || st.FromClients != 3 || st.ToBackends != 3 || st.FromBackends != 3 || st.ToClients != 3 {
		t.Errorf("stats %+v, want 3 datagrams each way and no session", st)
	}
}

func TestFlowSticksToItsBackend(t *testing.T) {
	bs := []*backend{startBackend(t, "b1", "127.0.0.1", 0), startBackend(t, "b2", "127.0.0.1", 0),
		startBackend(t, "b3", "127.0.0.1", 0)}
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, bs...)}, "127.0.0.1:0")
	for range 3 {
		c := dial(t, p.addr)
		first := from(ask(t, c, "x"))
		for i := range 20 {
			if got := from(ask(t, c, "x")); got != first {
				t.Fatalf("datagram %d of one flow went to %s, the first to %s", i, got, first)
			}
		}
	}
	// One session (one source port at the backend) per flow.
	for _, b := range bs {
		if n := b.sources(); n != 1 {
			t.Errorf("%s saw %d source ports, want 1", b.name, n)
		}
	}
}

func TestFlowsSpreadOverBackends(t *testing.T) {
	bs := []*backend{startBackend(t, "b1", "127.0.0.1", 0), startBackend(t, "b2", "127.0.0.1", 0),
		startBackend(t, "b3", "127.0.0.1", 0)}
	for _, bal := range []pool.Balance{pool.RoundRobin, pool.Random} {
		t.Run(bal.String(), func(t *testing.T) {
			p := startProxy(t, &Server{Pool: newPool(t, bal, bs...)}, "127.0.0.1:0")
			counts := map[string]int{}
			for range 90 {
				counts[from(ask(t, dial(t, p.addr), "x"))]++
			}
			for _, b := range bs {
				// Round robin gives 30 each; random by the power of
				// two choices stays near it.
				if counts[b.name] < 15 {
					t.Errorf("90 flows: %v, want about 30 each", counts)
					break
				}
			}
		})
	}
}

func TestMaglevClientIPPortSpreadsOneClient(t *testing.T) {
	bs := []*backend{startBackend(t, "b1", "127.0.0.1", 0), startBackend(t, "b2", "127.0.0.1", 0)}
	o := pool.Options{Balance: pool.Maglev, HashKey: pool.ClientIPPort,
		Backends: []pool.BackendOptions{{Addr: bs[0].addr}, {Addr: bs[1].addr}}}
	pl, err := pool.New(o)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, &Server{Pool: pl}, "127.0.0.1:0")
	seen := map[string]bool{}
	for range 40 {
		c := dial(t, p.addr)
		got := from(ask(t, c, "x"))
		// Maglev on the client's address and port: the backend is a
		// function of the flow alone.
		want := "b1"
		if pl.Pick(c.LocalAddr().(*net.UDPAddr).AddrPort(), nil).Addr == bs[1].addr {
			want = "b2"
		}
		if got != want {
			t.Fatalf("flow %s reached %s, maglev says %s", c.LocalAddr(), got, want)
		}
		seen[got] = true
	}
	if len(seen) != 2 {
		t.Fatalf("40 client ports reached %v, want both backends", seen)
	}
}

func TestSessionEndsAfterResponses(t *testing.T) {
	// The backend answers every datagram three times.
	b := startBackend(t, "b1", "127.0.0.1", 3)
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, b), Responses: 1}, "127.0.0.1:0")
	c := dial(t, p.addr)
	if got := ask(t, c, "q1"); got != "b1 q1" {
		t.Fatalf("reply %q", got)
	}
	if !silent(c, 200*time.Millisecond) {
		t.Fatal("a second reply got through with responses = 1")
	}
	rec := p.log.waitEnd(t, EndResponses)
	if rec["datagrams_in"] != float64(1) || rec["datagrams_out"] != float64(1) {
		t.Errorf("record %v, want one datagram each way", rec)
	}
	if n := p.Stats().Sessions; n != 0 {
		t.Errorf("%d sessions live, want 0", n)
	}
	// The next query of the same flow is a new session.
	if got := ask(t, c, "q2"); got != "b1 q2" {
		t.Fatalf("reply %q", got)
	}
	eventually(t, 5*time.Second, "two sessions ended", func() bool { return len(p.log.sessions()) == 2 })
}

func TestSessionCap(t *testing.T) {
	b := startBackend(t, "b1", "127.0.0.1", 0)
	// The floor is never reached here: see TestFullTableEvictsIdleSession.
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, b), MaxSessions: 5,
		EvictIdle: time.Hour}, "127.0.0.1:0")
	fds := countFDs()
	var clients []*net.UDPConn
	for range 20 {
		c := dial(t, p.addr)
		clients = append(clients, c)
		c.Write([]byte("x"))
	}
	eventually(t, 5*time.Second, "the 20 flows to be placed or dropped", func() bool {
		st := p.Stats()
		return st.Sessions+int64(st.DroppedSessionCap) >= 20
	})
	st := p.Stats()
	if st.Sessions != 5 || st.DroppedSessionCap != 15 {
		t.Fatalf("stats %+v, want 5 sessions and 15 dropped", st)
	}
	// The five sessions' replies; none for the others, whose datagrams
	// were dropped.
	answered := make([]bool, len(clients))
	eventually(t, 5*time.Second, "5 of 20 flows answered (the cap)", func() bool {
		n := 0
		for i, c := range clients {
			answered[i] = answered[i] || !silent(c, time.Millisecond)
			if answered[i] {
				n++
			}
		}
		if n > 5 {
			t.Fatalf("%d of 20 flows answered, want 5 (the cap)", n)
		}
		return n == 5
	})
	// A storm of new flows opens no more sockets than the cap allows.
	for range 500 {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(p.addr))
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("x"))
		c.Close()
	}
	eventually(t, 5*time.Second, "the storm to be counted", func() bool {
		return p.Stats().DroppedSessionCap == 515
	})
	// The 20 clients and the 5 sessions' sockets.
	if n := countFDs() - fds; n > 25 {
		t.Errorf("%d more fds than before the flows, want at most 25", n)
	}
	if n := p.Stats().Sessions; n != 5 {
		t.Errorf("%d sessions, want 5", n)
	}
	// The drops are logged, but not 515 times.
	warnings := strings.Count(p.log.text(), `"msg":"udp session cap reached, dropping new flows"`)
	if warnings < 1 || warnings > 10 {
		t.Errorf("%d cap warnings for 515 drops, want a few", warnings)
	}
}

func TestFailoverWhenBackendGoesDown(t *testing.T) {
	bs := []*backend{startBackend(t, "b1", "127.0.0.1", 0), startBackend(t, "b2", "127.0.0.1", 0)}
	pl := newPool(t, pool.Maglev, bs...)
	p := startProxy(t, &Server{Pool: pl}, "127.0.0.1:0")
	c := dial(t, p.addr)
	first := from(ask(t, c, "x"))
	var down *pool.Backend
	for _, be := range pl.Backends() {
		if (first == "b1") == (be.Addr == bs[0].addr) {
			down = be
		}
	}
	pl.SetUp(down, false)
	got := from(ask(t, c, "x"))
	if got == first {
		t.Fatalf("after %s went down the flow still reached it", first)
	}
	rec := p.log.waitEnd(t, EndBackendDown)
	if rec["backend"] != down.String() {
		t.Errorf("backend_down record for %v, want %s", rec["backend"], down)
	}
	// Coming back up does not move the flow again: it sticks to its new
	// backend.
	pl.SetUp(down, true)
	if again := from(ask(t, c, "x")); again != got {
		t.Errorf("flow moved from %s to %s when %s came back", got, again, first)
	}
}

// TestDrainingBackendKeepsItsFlows drains a backend: its live flows stay,
// as connections to it would, and new flows go elsewhere.
func TestDrainingBackendKeepsItsFlows(t *testing.T) {
	bs := []*backend{startBackend(t, "b1", "127.0.0.1", 0), startBackend(t, "b2", "127.0.0.1", 0)}
	pl := newPool(t, pool.RoundRobin, bs...)
	p := startProxy(t, &Server{Pool: pl}, "127.0.0.1:0")
	c := dial(t, p.addr)
	first := from(ask(t, c, "x"))
	for _, be := range pl.Backends() {
		if (first == "b1") == (be.Addr == bs[0].addr) {
			pl.SetAdmin(be, pool.Drain)
		}
	}
	for range 3 {
		if got := from(ask(t, c, "x")); got != first {
			t.Fatalf("the flow moved from draining %s to %s", first, got)
		}
	}
	for range 4 {
		if got := from(ask(t, dial(t, p.addr), "x")); got == first {
			t.Fatalf("a new flow reached draining %s", first)
		}
	}
}

func TestBackendRefusedEndsSession(t *testing.T) {
	// Nothing listens on the backend's port: its ICMP port unreachable
	// ends the session.
	tmp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	dead := &backend{addr: tmp.LocalAddr().(*net.UDPAddr).AddrPort()}
	tmp.Close()
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, dead)}, "127.0.0.1:0")
	c := dial(t, p.addr)
	c.Write([]byte("x"))
	p.log.waitEnd(t, EndBackendRefused)
	eventually(t, 5*time.Second, "no session", func() bool { return p.Stats().Sessions == 0 })
}

func TestNoBackendDrops(t *testing.T) {
	b := startBackend(t, "b1", "127.0.0.1", 0)
	pl := newPool(t, pool.RoundRobin, b)
	pl.SetUp(pl.Backends()[0], false)
	p := startProxy(t, &Server{Pool: pl}, "127.0.0.1:0")
	c := dial(t, p.addr)
	c.Write([]byte("x"))
	eventually(t, 5*time.Second, "the datagram to be dropped", func() bool { return p.Stats().DroppedNoBackend > 0 })
	if st := p.Stats(); st.DroppedNoBackend != 1 || st.Sessions != 0 {
		t.Fatalf("stats %+v, want 1 dropped for no backend", st)
	}
	if !silent(c, 50*time.Millisecond) {
		t.Fatal("a reply came with no backend up")
	}
}

func TestIPv6(t *testing.T) {
	b := startBackend(t, "b6", "::1", 0)
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, b)}, "[::1]:0")
	c := dial(t, p.addr)
	if got := ask(t, c, "six"); got != "b6 six" {
		t.Fatalf("reply %q", got)
	}
	// An IPv4 backend behind an IPv6 listener, and the other way round.
	b4 := startBackend(t, "b4", "127.0.0.1", 0)
	p2 := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, b4)}, "[::1]:0")
	if got := ask(t, dial(t, p2.addr), "x"); got != "b4 x" {
		t.Fatalf("reply %q", got)
	}
	p3 := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, b)}, "127.0.0.1:0")
	if got := ask(t, dial(t, p3.addr), "x"); got != "b6 x" {
		t.Fatalf("reply %q", got)
	}
}

// TestWildcardRepliesFromDestination sends to one of the host's addresses
// through a listener bound to all of them: the reply must come from the
// address the client sent to, or the client would drop it.
func TestWildcardRepliesFromDestination(t *testing.T) {
	tests := []struct{ name, bind, client, to string }{
		{"ipv4", "0.0.0.0:0", "127.0.0.1", "127.0.0.2"},
		{"ipv6", "[::]:0", "::1", "::1"},
		{"ipv4 on dual stack", "[::]:0", "127.0.0.1", "127.0.0.3"},
	}
	b := startBackend(t, "b1", "127.0.0.1", 0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, b)}, tt.bind)
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(tt.client), 0)))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			to := p.to(tt.to)
			for range 2 { // a new session, then an existing one
				if _, err := c.WriteToUDPAddrPort([]byte("x"), to); err != nil {
					t.Fatal(err)
				}
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 64)
				n, src, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					t.Fatal(err)
				}
				src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
				if src != to || string(buf[:n]) != "b1 x" {
					t.Fatalf("reply %q from %s, want %q from %s", buf[:n], src, "b1 x", to)
				}
			}
		})
	}
}

func TestLargeDatagram(t *testing.T) {
	b := startBackend(t, "b1", "127.0.0.1", 0)
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, b)}, "127.0.0.1:0")
	// The largest payload the backend can still prefix with its name.
	msg := strings.Repeat("z", 65507-len("b1 "))
	if got := ask(t, dial(t, p.addr), msg); got != "b1 "+msg {
		t.Fatalf("reply of %d bytes, want %d", len(got), len("b1 "+msg))
	}
}
