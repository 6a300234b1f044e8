package l4

import (
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"
)

// failingAccept fails every accept as a process out of fds does, and
// records when it was called.
type failingAccept struct {
	mu    sync.Mutex
	calls []time.Time
}

func (f *failingAccept) accept(fd int) (int, netip.AddrPort, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, time.Now())
	return -1, netip.AddrPort{}, syscall.EMFILE
}

func (f *failingAccept) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func TestAcceptErrorsBackOff(t *testing.T) {
	fa := &failingAccept{}
	p := startProxy(t, &Server{Pool: newPool(t, 0, 0, deadPort(t)), accept4: fa.accept})
	// A client waiting in the queue keeps the listener readable.
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	eventually(t, 10*time.Second, "six accept attempts", func() bool { return fa.count() >= 6 })
	// Retrying at once would make six calls in microseconds; backing off
	// from 5 ms, doubling, spaces them by 5+10+20+40+80 ms at least.
	fa.mu.Lock()
	spread := fa.calls[5].Sub(fa.calls[0])
	fa.mu.Unlock()
	if spread < 150*time.Millisecond {
		t.Fatalf("six failing accepts within %v: the loop does not back off", spread)
	}
}

func TestLimiterSharedAcrossServers(t *testing.T) {
	b := startBackend(t, greeter("b"))
	shared := NewLimiter(2)
	p1 := startProxy(t, &Server{Pool: newPool(t, 0, 0, b.addr), Limiter: shared})
	p2 := startProxy(t, &Server{Pool: newPool(t, 0, 0, b.addr), Limiter: shared})
	c1 := dial(t, p1.addr, "")
	readLine(t, c1)
	c2 := dial(t, p2.addr, "")
	readLine(t, c2)
	// Two live connections use the shared cap, whichever server has them.
	c3 := dial(t, p2.addr, "")
	c3.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c3.Read(make([]byte, 1)); n != 0 || !isTimeout(err) {
		t.Fatalf("third connection served beyond the shared cap: %d bytes, %v", n, err)
	}
	c1.Close()
	if got := readLine(t, c3); got != "b" {
		t.Fatalf("third connection greeted %q after a slot freed", got)
	}
}
