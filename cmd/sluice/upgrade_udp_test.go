package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
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
	// Every reply, or as many as come: the checks below say what is
	// missing.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		all := true
		for _, f := range fs {
			all = all && f.got.Load() >= f.sent.Load()
		}
		if all {
			break
		}
	}
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

// A new process that says it serves a UDP listener and dies while the old
// one hands the sessions over (a stand-in speaking the first frame) leaves
// the old one serving the listener: it reads the socket again, and the
// flow whose session it had sent (and closed) gets a new one and its
// replies.
func TestUpgradeFailingAfterReadyReadsUDPAgain(t *testing.T) {
	be := startSlowEcho(t, 0)
	addr := freePort(t)
	dir := t.TempDir()
	l := startLineage(t, dir, fmt.Sprintf(`pid_file = %q
[listeners.u]
bind = %q
protocol = "udp"
pool = "p"
session_timeout = "1m"
[pools.p]
[[pools.p.backends]]
address = %q
`, pidFileFor(dir), addr, be.addr))
	pid := l.pidOr0()
	f := &udpFlow{c: dialUDP(t, addr)}
	ask := func(seq int) {
		t.Helper()
		fmt.Fprintf(f.c, "0 %d", seq)
		f.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		n, err := f.c.Read(buf)
		if want := fmt.Sprintf("0 %d", seq); err != nil || string(buf[:n]) != want {
			t.Fatalf("reply %q, %v; want %q", buf[:n], err, want)
		}
	}
	ask(0)
	// Ready for listener u; it reads a frame's length, so that the old
	// process has sent the session, and dies.
	ready := `{"pid":1,"tcp":[],"udp":["u"]}`
	script := fmt.Sprintf("#!/bin/sh\nprintf '\\000\\000\\000\\%03o%s' >&3\nhead -c 4 <&3 >/dev/null\n", len(ready), ready)
	path := filepath.Join(dir, "fake")
	os.WriteFile(path, []byte(script), 0o755)
	l.install(path)
	syscall.Kill(pid, syscall.SIGUSR2)
	waitFor(t, 60*time.Second, "the failure logged", func() bool {
		return strings.Contains(l.output(), "failed taking over")
	})
	if log := l.output(); !strings.Contains(log, "udp sessions closed: sent to the new process before it failed") {
		t.Fatalf("the session sent is not logged:\n%s", log)
	}
	ask(1)
	if l.pidOr0() != pid || gone(pid) {
		t.Fatalf("the old process (%d) is not serving; pid file %d", pid, l.pidOr0())
	}
	if srcs := be.sources(0); len(srcs) != 2 {
		t.Fatalf("the flow reached the backend from %v, want a new session after the failure", srcs)
	}
}
