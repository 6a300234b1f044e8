package main

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// killable is a greeting echo backend that a test can stop.
type killable struct {
	addr  string
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
	once  sync.Once
}

func startKillable(t *testing.T, name string) *killable {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k := &killable{addr: ln.Addr().String(), ln: ln}
	k.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			k.mu.Lock()
			k.conns = append(k.conns, c)
			k.mu.Unlock()
			k.wg.Go(func() {
				defer c.Close()
				io.WriteString(c, name+"\n")
				io.Copy(c, c)
			})
		}
	})
	t.Cleanup(k.kill)
	return k
}

// kill closes the listener and every connection, as a crash would.
func (k *killable) kill() {
	k.once.Do(func() {
		k.ln.Close()
		k.mu.Lock()
		for _, c := range k.conns {
			c.Close()
		}
		k.mu.Unlock()
		k.wg.Wait()
	})
}

// TestKilledBackendGetsNoNewConnections kills one of two checked backends:
// within fall x interval + timeout sluice logs it down once, with the
// reason, and every new connection goes to the other.
func TestKilledBackendGetsNoNewConnections(t *testing.T) {
	const interval, timeout, fall = 100 * time.Millisecond, 80 * time.Millisecond, 3
	a, b := startKillable(t, "a"), startKillable(t, "b")
	addr := freePort(t)
	cfg := fmt.Sprintf(`
[listeners.t]
bind = %q
pool = "p"
[pools.p]
retries = 0
passive_failures = 0
[pools.p.health]
kind = "tcp"
interval = %q
timeout = %q
jitter = "0s"
fall = %d
[[pools.p.backends]]
address = %q
[[pools.p.backends]]
address = %q
`, addr, interval, timeout, fall, a.addr, b.addr)
	p := startSluice(t, nil, "-c", writeFile(t, cfg))
	p.waitOutput(t, `msg="backend up" pool=p backend=`+a.addr)
	p.waitOutput(t, `msg="backend up" pool=p backend=`+b.addr)
	killed := time.Now()
	a.kill()
	p.waitOutput(t, `msg="backend down" pool=p backend=`+a.addr)
	// The log line is written at most a few ms after the pool changed;
	// allow for scheduling on a loaded machine.
	if took, bound := time.Since(killed), fall*interval+timeout; took > bound+300*time.Millisecond {
		t.Errorf("down %v after the kill, want within %v", took, bound)
	}
	for i := range 10 {
		if _, _, greeting := dialLine(t, addr); greeting != "b" {
			t.Fatalf("connection %d greeted by %q after a was marked down", i, greeting)
		}
	}
	out := p.out.String()
	if n := strings.Count(out, `msg="backend down" pool=p backend=`+a.addr); n != 1 {
		t.Errorf("%d down lines for a, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, `reason="connect: connection refused"`) {
		t.Errorf("no reason in the down line:\n%s", out)
	}
}

// TestBackupTakesOver checks a backup backend end to end: unused while the
// primary is up, used while it is down.
func TestBackupTakesOver(t *testing.T) {
	primary, backup := startKillable(t, "primary"), startKillable(t, "backup")
	addr := freePort(t)
	cfg := fmt.Sprintf(`
[listeners.t]
bind = %q
pool = "p"
[pools.p]
retries = 0
[pools.p.health]
interval = "100ms"
timeout = "50ms"
fall = 1
[[pools.p.backends]]
address = %q
[[pools.p.backends]]
address = %q
backup = true
`, addr, primary.addr, backup.addr)
	p := startSluice(t, nil, "-c", writeFile(t, cfg))
	p.waitOutput(t, `msg="backend up" pool=p backend=`+primary.addr)
	p.waitOutput(t, `msg="backend up" pool=p backend=`+backup.addr)
	for range 4 {
		if _, _, g := dialLine(t, addr); g != "primary" {
			t.Fatalf("greeting %q with the primary up", g)
		}
	}
	primary.kill()
	p.waitOutput(t, "pool is using its backup backends")
	for range 4 {
		if _, _, g := dialLine(t, addr); g != "backup" {
			t.Fatalf("greeting %q with the primary down", g)
		}
	}
}
