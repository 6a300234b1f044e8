package pool

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"sluice/health"
)

// checkTarget reports a backend's active checks to its pool, as
// cmd/sluice's adapter does.
type checkTarget struct {
	p *Pool
	b *Backend
}

func (t checkTarget) SetHealth(up bool, reason string) { t.p.SetHealth(t.b, up, reason) }

func (t checkTarget) SetHealthStreak(up bool, reason string, passes, rise int) {
	t.p.ReportCheck(t.b, CheckResult{Up: up, Reason: reason, Passes: passes, Rise: rise})
}

var _ health.StreakTarget = checkTarget{}

// backendServer is a loopback TCP backend that can be stopped and started
// again on the same port.
type backendServer struct {
	t    *testing.T
	addr netip.AddrPort
	mu   sync.Mutex
	ln   net.Listener
	wg   sync.WaitGroup
}

func startBackendServer(t *testing.T) *backendServer {
	s := &backendServer{t: t}
	s.listen("127.0.0.1:0")
	s.addr = s.ln.Addr().(*net.TCPAddr).AddrPort()
	t.Cleanup(s.stop)
	return s
}

// listen starts accepting on addr; accepted connections are closed at once.
func (s *backendServer) listen(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.t.Fatal(err)
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	})
}

func (s *backendServer) stop() {
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *backendServer) restart() { s.listen(s.addr.String()) }

// TestEjectionEndsOnChecks reproduces issue 8's blip behind ECMP: a backend
// down for a moment is ejected by the passive checks of the one host whose
// clients hit the blip, while its active checks may never notice. The
// ejection must end once rise checks have passed, not after the backoff
// (a minute here), so that every host sends the backend's clients to it
// again within rise intervals; and no line may call it up while ejected.
func TestEjectionEndsOnChecks(t *testing.T) {
	srv := startBackendServer(t)
	p, logs := newLogged(t, Options{Name: "db", Checked: true, PassiveFailures: 3, PassiveBackoff: time.Minute,
		Backends: []BackendOptions{{Addr: srv.addr}}})
	runPool(t, p)
	b := p.Backends()[0]
	m := &health.Monitor{}
	const interval = 30 * time.Millisecond
	if err := m.Add(health.Check{Prober: health.TCP{}, Addr: srv.addr, Interval: interval, Rise: 2, Fall: 3},
		checkTarget{p, b}); err != nil {
		t.Fatal(err)
	}
	m.Start()
	t.Cleanup(m.Stop)
	waitFor(t, 5*time.Second, "the first check", b.Up)

	srv.stop()
	for range 3 {
		c, err := net.Dial("tcp", srv.addr.String())
		if err == nil {
			c.Close()
			t.Fatal("connected to a stopped backend")
		}
		b.ReportFailure(err)
	}
	if b.Up() {
		t.Fatal("not ejected after three refused connects")
	}
	srv.restart()
	ejected := time.Now()
	waitFor(t, 5*time.Second, "the checks to end the ejection", b.Up)
	if d := time.Since(ejected); d > 30*interval {
		t.Errorf("back after %v, want about rise x interval (%v)", d, 2*interval)
	}
	// Every "backend up" after the ejection follows its end.
	back := true // not ejected at start
	for _, m := range logs.messages() {
		switch m {
		case "backend ejected":
			back = false
		case "backend back from ejection":
			back = true
		case "backend up":
			if !back {
				t.Errorf("logged %q while ejected", m)
			}
		}
	}
	if r := logs.records("backend back from ejection"); len(r) != 1 || r[0]["reason"] != "2 checks passed" {
		t.Errorf("return records %v", r)
	}
	c, err := net.Dial("tcp", srv.addr.String())
	if err != nil {
		t.Fatalf("backend back from ejection, but connecting: %v", err)
	}
	c.Close()
}
