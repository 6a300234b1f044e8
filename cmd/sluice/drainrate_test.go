package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"sluice/internal/pool"
)

// drainRateConfig is a TCP listener over two echo backends, with the
// pool's drain_rate line rate ("" for none).
func drainRateConfig(listen, b1, b2, drain, rate string) string {
	return fmt.Sprintf(`drain_timeout = %q
[listeners.t]
bind = %q
pool = "p"
sockets = 2
[pools.p]
%s
[[pools.p.backends]]
address = %q
[[pools.p.backends]]
address = %q
`, drain, listen, rate, b1, b2)
}

// openLines opens n connections to addr, each past its greeting.
func openLines(t *testing.T, addr string, n int) []*bufio.Reader {
	t.Helper()
	var rs []*bufio.Reader
	for range n {
		c, r, _ := dialLine(t, addr)
		t.Cleanup(func() { c.Close() })
		c.SetReadDeadline(time.Now().Add(time.Minute))
		rs = append(rs, r)
	}
	return rs
}

// A backend drained by hand with a drain_rate has its connections closed
// after the drain timeout, one at a time at the rate (end=drain); the
// other backend's stay. Without a drain_rate they stay too, as a drain
// always left them.
func TestDrainByHandAtDrainRate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rate   string
		closed bool
	}{
		{"drain_rate", `drain_rate = "20/s"`, true},
		{"none", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 10 // per backend
			b1, b2 := echoBackend(t), echoBackend(t)
			addr := freePort(t)
			s := startInProcessFile(t, strings.Replace(drainRateConfig(addr, b1, b2, "200ms", tc.rate),
				"[listeners.t]", "[log]\nformat = \"json\"\n[listeners.t]", 1))
			openLines(t, addr, 2*n)
			p := s.pool(t, "p")
			var drained *pool.Backend
			for _, b := range p.Backends() {
				if b.String() == b1 {
					drained = b
				}
			}
			waitFor(t, 5*time.Second, "connections to both backends", func() bool { return drained.Active() == n })
			start := time.Now()
			p.SetAdmin(drained, pool.Drain)
			if !tc.closed {
				// Well past the drain timeout, nothing is closed.
				time.Sleep(time.Second)
				if got := drained.Active(); got != n {
					t.Fatalf("%d connections left on the backend drained without a drain_rate, want %d", got, n)
				}
				return
			}
			waitFor(t, 10*time.Second, "the drained backend's connections to close", func() bool { return drained.Active() == 0 })
			took := time.Since(start)
			// 200ms of drain timeout, then 9 gaps of 50ms.
			if took < 600*time.Millisecond {
				t.Errorf("%d connections closed %v after the drain, want at least 650ms at 20/s", n, took)
			}
			var ends []time.Time
			for _, c := range s.conns(t) {
				if c.Backend != b1 || c.End != "drain" {
					t.Errorf("closed a connection to %s with end=%s, want only %s's with end=drain", c.Backend, c.End, b1)
				}
				ends = append(ends, c.Time)
			}
			if len(ends) != n {
				t.Fatalf("%d connection lines, want %d", len(ends), n)
			}
			if first := ends[0].Sub(start); first < 200*time.Millisecond {
				t.Errorf("first close %v after the drain, before the drain timeout", first)
			}
			if !strings.Contains(s.log.String(), msgDrained) {
				t.Errorf("no %q line", msgDrained)
			}
		})
	}
}

// The connections left at the drain timeout of a shutdown are closed at
// drain_rate; a second signal closes the rest at once.
func TestShutdownAtDrainRateAndSecondSignal(t *testing.T) {
	const n = 10
	addr := freePort(t)
	p := startSluice(t, nil, "-c", writeFile(t, drainRateConfig(addr, echoBackend(t), echoBackend(t), "100ms", `drain_rate = "2/s"`)))
	p.waitOutput(t, "listening")
	rs := openLines(t, addr, n)
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.waitOutput(t, "end=drain")
	// At 2/s the rest would take 4.5 s.
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit %d; output:\n%s", code, p.out)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("exit %v after the second signal", d)
	}
	for _, r := range rs {
		if _, err := r.ReadString('\n'); err == nil {
			t.Fatal("connection still open after sluice exited")
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("connection still open after sluice exited")
		}
	}
	if got := strings.Count(p.out.String(), "end=drain"); got != n {
		t.Errorf("%d end=drain lines, want %d; output:\n%s", got, n, p.out)
	}
}

// A backend a reload removes has its connections closed after the drain
// timeout at the pool's drain_rate.
func TestReloadRemovedBackendAtDrainRate(t *testing.T) {
	const n = 5 // per backend
	b1, b2 := echoBackend(t), echoBackend(t)
	addr := freePort(t)
	conf := func(backends ...string) string {
		text := fmt.Sprintf("drain_timeout = \"100ms\"\n[log]\nformat = \"json\"\n[listeners.t]\nbind = %q\npool = \"p\"\n[pools.p]\ndrain_rate = \"20/s\"\n", addr)
		for _, b := range backends {
			text += fmt.Sprintf("[[pools.p.backends]]\naddress = %q\n", b)
		}
		return text
	}
	path := writeFile(t, conf(b1, b2))
	d, log := inProcessReload(t, path)
	openLines(t, addr, 2*n)
	var gone *pool.Backend
	for _, b := range d.pools["p"].Backends() {
		if b.String() == b1 {
			gone = b
		}
	}
	os.WriteFile(path, []byte(conf(b2)), 0o644)
	start := time.Now()
	if err := d.reload(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the removed backend's connections to close", func() bool { return gone.Active() == 0 })
	// 100ms of drain timeout, then 4 gaps of 50ms.
	if took := time.Since(start); took < 280*time.Millisecond {
		t.Errorf("%d connections closed %v after the reload, want at least 300ms at 20/s", n, took)
	}
	if got := strings.Count(log.String(), `"end":"drain"`); got != n {
		t.Errorf("%d end=drain lines, want %d", got, n)
	}
	if !strings.Contains(log.String(), msgRemoved) {
		t.Errorf("no %q line", msgRemoved)
	}
}
