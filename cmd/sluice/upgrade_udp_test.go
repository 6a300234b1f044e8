package main

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// UDP flows exchanging continuously across several binary upgrades keep
// their sessions: the backend hears each flow from one source port
// throughout (the same socket, handed from process to process), and every
// reply comes back, those the backend sent while a hand-over was under
// way too (it answers 20 ms late, so replies are always in flight). Each
// new process takes over every session, and each old process exits.
func TestUpgradesHandUDPSessionsOver(t *testing.T) {
	be := startSlowEcho(t, 20*time.Millisecond)
	addr := freePort(t)
	dir := t.TempDir()
	l := startLineage(t, dir, fmt.Sprintf(`pid_file = %q
drain_timeout = "20s"
[listeners.u]
bind = %q
protocol = "udp"
pool = "p"
sockets = 2
session_timeout = "1m"
[pools.p]
[[pools.p.backends]]
address = %q
`, pidFileFor(dir), addr, be.addr))

	const flows = 4
	stop := make(chan struct{})
	var wg sync.WaitGroup
	fs := make([]*udpFlow, flows)
	for i := range fs {
		fs[i] = &udpFlow{id: i, c: dialUDP(t, addr)}
		wg.Go(func() { fs[i].send(stop) })
		wg.Go(fs[i].receive)
	}
	progress := func() []int64 {
		var p []int64
		for _, f := range fs {
			p = append(p, f.got.Load())
		}
		return p
	}
	moved := func(what string, before []int64) {
		t.Helper()
		waitFor(t, 20*time.Second, what, func() bool {
			for i, n := range progress() {
				if n <= before[i]+20 {
					return false
				}
			}
			return true
		})
	}
	moved("replies before the first upgrade", make([]int64, flows))

	const upgrades = 3
	pid := l.pidOr0()
	for i := 1; i <= upgrades; i++ {
		before := progress()
		syscall.Kill(pid, syscall.SIGUSR2)
		next := l.waitNew(pid)
		waitFor(t, 30*time.Second, fmt.Sprintf("process %d to exit after upgrade %d", pid, i), func() bool { return gone(pid) })
		pid = next
		moved(fmt.Sprintf("every flow to move on after upgrade %d", i), before)
	}
	close(stop)
	waitFor(t, 10*time.Second, "every reply", func() bool {
		for _, f := range fs {
			if f.got.Load() < f.sent.Load() {
				return false
			}
		}
		return true
	})
	for _, f := range fs {
		f.c.Close()
	}
	wg.Wait()

	for _, f := range fs {
		if f.got.Load() != f.sent.Load() || f.bad.Load() != 0 {
			t.Errorf("flow %d: sent %d datagrams, got %d replies (%d wrong)", f.id, f.sent.Load(), f.got.Load(), f.bad.Load())
		}
		if srcs := be.sources(f.id); len(srcs) != 1 {
			t.Errorf("flow %d reached the backend from %d source ports, want 1: %v", f.id, len(srcs), srcs)
		}
	}
	log := l.output()
	took := 0
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "upgrade: took over") {
			took++
			if !strings.Contains(line, fmt.Sprintf("udp_sessions=%d", flows)) || !strings.Contains(line, "errors=0") {
				t.Errorf("a take-over without the %d sessions: %s", flows, line)
			}
		}
	}
	if took != upgrades {
		t.Errorf("%d take-overs logged, want %d", took, upgrades)
	}
}

// udpFlow is one client sending numbered datagrams every 2 ms and
// counting the replies, which must echo them in order.
type udpFlow struct {
	id             int
	c              *net.UDPConn
	sent, got, bad atomic.Int64
}

func (f *udpFlow) send(stop <-chan struct{}) {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		if _, err := fmt.Fprintf(f.c, "%d %d", f.id, seq); err != nil {
			return
		}
		f.sent.Add(1)
	}
}

func (f *udpFlow) receive() {
	buf := make([]byte, 64)
	for {
		n, err := f.c.Read(buf)
		if err != nil {
			return
		}
		id, seq, _ := strings.Cut(string(buf[:n]), " ")
		if id != strconv.Itoa(f.id) || seq != strconv.FormatInt(f.got.Load(), 10) {
			f.bad.Add(1)
		}
		f.got.Add(1)
	}
}

// slowEcho echoes each datagram after a delay, and records each flow's
// source addresses (a flow's id is its datagrams' first word).
type slowEcho struct {
	addr string
	mu   sync.Mutex
	srcs map[string]map[netip.AddrPort]bool
}

func startSlowEcho(t *testing.T, delay time.Duration) *slowEcho {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	// A large buffer: replies wait in the sessions' sockets during
	// a hand-over.
	c.SetReadBuffer(4 << 20)
	e := &slowEcho{addr: c.LocalAddr().String(), srcs: map[string]map[netip.AddrPort]bool{}}
	type due struct {
		at   time.Time
		b    []byte
		from netip.AddrPort
	}
	q := make(chan due, 100000)
	var wg sync.WaitGroup
	wg.Go(func() {
		for d := range q {
			time.Sleep(time.Until(d.at))
			c.WriteToUDPAddrPort(d.b, d.from)
		}
	})
	wg.Go(func() {
		defer close(q)
		buf := make([]byte, 64)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			b := append([]byte(nil), buf[:n]...)
			id, _, _ := strings.Cut(string(b), " ")
			e.mu.Lock()
			if e.srcs[id] == nil {
				e.srcs[id] = map[netip.AddrPort]bool{}
			}
			e.srcs[id][from] = true
			e.mu.Unlock()
			q <- due{time.Now().Add(delay), b, from}
		}
	})
	t.Cleanup(func() {
		c.Close()
		wg.Wait()
	})
	return e
}

// sources returns the addresses flow id came from.
func (e *slowEcho) sources(id int) []netip.AddrPort {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []netip.AddrPort
	for a := range e.srcs[strconv.Itoa(id)] {
		out = append(out, a)
	}
	return out
}
