package udp

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"sluice/internal/pool"
)

// closedPort returns a loopback address where nothing listens: datagrams
// sent there draw ICMP port unreachable.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := c.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Close()
	return addr
}

// passivePool is a pool over addrs whose backends are ejected after
// failures in a row.
func passivePool(t *testing.T, failures int, addrs ...netip.AddrPort) *pool.Pool {
	t.Helper()
	o := pool.Options{Name: "passive", PassiveFailures: failures, PassiveBackoff: time.Hour,
		Logger: slog.New(slog.DiscardHandler)}
	for _, a := range addrs {
		o.Backends = append(o.Backends, pool.BackendOptions{Addr: a})
	}
	pl, err := pool.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return pl
}

// countEnds returns how many session lines ended with e.
func (l *logSink) countEnds(e End) int {
	n := 0
	for _, r := range l.sessions() {
		if r["end"] == e.String() {
			n++
		}
	}
	return n
}

// refuse sends a datagram from a new flow through p to a backend where
// nothing listens, and waits for its session to end backend_refused.
func refuse(t *testing.T, p *proxy) {
	t.Helper()
	want := p.log.countEnds(EndBackendRefused) + 1
	dial(t, p.addr).Write([]byte("x"))
	eventually(t, 10*time.Second, "a backend_refused session", func() bool {
		return p.log.countEnds(EndBackendRefused) >= want
	})
}

// TestRefusedSessionsEjectBackend sends flows to a backend port that is
// closed: the ICMP port unreachable that ends each session counts as a
// failure for passive checks, as a refused TCP connect does, and the
// backend is ejected after passive_failures of them; new flows then go to
// the backend that answers.
func TestRefusedSessionsEjectBackend(t *testing.T) {
	live := startBackend(t, "live", "127.0.0.1", 0)
	pl := passivePool(t, 2, closedPort(t), live.addr)
	dead := pl.Backends()[0]
	p := startProxy(t, &Server{Pool: pl}, "127.0.0.1:0")
	// Round robin: every other new flow goes to the dead backend.
	eventually(t, 10*time.Second, "two refused sessions", func() bool {
		if !dead.Up() || p.log.countEnds(EndBackendRefused) >= 2 {
			return true
		}
		dial(t, p.addr).Write([]byte("x"))
		return false
	})
	eventually(t, 5*time.Second, "the closed port's backend to be ejected", func() bool {
		return dead.State() == pool.StateDown
	})
	if n := p.log.countEnds(EndBackendRefused); n < 2 {
		t.Errorf("ejected after %d sessions refused, want 2 (passive_failures)", n)
	}
	rec := p.log.waitEnd(t, EndBackendRefused)
	if rec["error"] != "recvmmsg: connection refused" && rec["error"] != "sendmmsg: connection refused" {
		t.Errorf("refused session's error %v, want the errno and its call", rec["error"])
	}
	for range 4 {
		if got := from(ask(t, dial(t, p.addr), "x")); got != "live" {
			t.Fatalf("a new flow reached %q after the ejection", got)
		}
	}
}

// TestReplyResetsPassiveFailures alternates a backend port between closed
// and answering: a session's first reply counts as a success, which
// restarts the count of failures in a row, so the backend is ejected only
// by failures with no reply in between.
func TestReplyResetsPassiveFailures(t *testing.T) {
	addr := closedPort(t)
	pl := passivePool(t, 2, addr)
	be := pl.Backends()[0]
	p := startProxy(t, &Server{Pool: pl}, "127.0.0.1:0")

	refuse(t, p) // failure 1 of 2
	answerOnce(t, addr, p)
	refuse(t, p) // failure 1 again, after the success
	if !be.Up() {
		t.Fatal("ejected after a failure, a reply and a failure; the reply should restart the count")
	}
	refuse(t, p) // failure 2 in a row
	eventually(t, 5*time.Second, "the backend to be ejected", func() bool {
		return be.State() == pool.StateDown
	})
}

// answerOnce serves addr for one new flow through p, answering it with a
// reply (several datagrams, which count as one success).
func answerOnce(t *testing.T, addr netip.AddrPort, p *proxy) {
	t.Helper()
	srv, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatalf("binding the backend's port again: %v", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer srv.Close()
	wg.Go(func() {
		buf := make([]byte, 64)
		for {
			n, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			for range 3 {
				srv.WriteToUDPAddrPort(buf[:n], from)
			}
		}
	})
	c := dial(t, p.addr)
	if got := ask(t, c, "y"); got != "y" {
		t.Fatalf("reply %q, want %q", got, "y")
	}
}

// TestConnectFailureCounts opens sessions to a backend whose connect()
// fails (the loopback broadcast address: EACCES without SO_BROADCAST, and
// no datagram leaves): each counts as a failure for passive checks, as a
// failed TCP connect does.
func TestConnectFailureCounts(t *testing.T) {
	pl := passivePool(t, 3, netip.MustParseAddrPort("127.255.255.255:9"))
	be := pl.Backends()[0]
	p := startProxy(t, &Server{Pool: pl}, "127.0.0.1:0")
	for i := range 3 {
		if !be.Up() {
			t.Fatalf("ejected after %d failures, want 3", i)
		}
		want := p.Stats().DroppedSocket + 1
		dial(t, p.addr).Write([]byte("x"))
		eventually(t, 5*time.Second, "the datagram to be dropped", func() bool {
			return p.Stats().DroppedSocket >= want
		})
	}
	if be.State() != pool.StateDown {
		t.Fatal("not ejected after 3 failed connects")
	}
}

func TestLocalFailure(t *testing.T) {
	for _, tt := range []struct {
		err   error
		local bool
	}{
		{os.NewSyscallError("socket", syscall.EMFILE), true},
		{fmt.Errorf("connecting: %w", os.NewSyscallError("connect", syscall.EAGAIN)), true},
		{os.NewSyscallError("sendmmsg", syscall.ENOBUFS), true},
		{os.NewSyscallError("sendmmsg", syscall.EMSGSIZE), true},
		{os.NewSyscallError("recvmmsg", syscall.ECONNREFUSED), false},
		{os.NewSyscallError("sendmmsg", syscall.EHOSTUNREACH), false},
		{fmt.Errorf("connecting: %w", os.NewSyscallError("connect", syscall.ENETUNREACH)), false},
		{nil, false},
	} {
		if got := localFailure(tt.err); got != tt.local {
			t.Errorf("localFailure(%v) = %v, want %v", tt.err, got, tt.local)
		}
	}
}
