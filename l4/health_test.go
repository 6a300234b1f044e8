package l4

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sluice/internal/pool"
)

// healthPool builds a pool over addrs with o's health options; its timed
// steps run until the test ends.
func healthPool(t *testing.T, o pool.Options, addrs ...string) *pool.Pool {
	t.Helper()
	o.Name = "db"
	o.Logger = slog.New(slog.DiscardHandler)
	for _, a := range addrs {
		o.Backends = append(o.Backends, pool.BackendOptions{Addr: netip.MustParseAddrPort(a)})
	}
	p, err := pool.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { p.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return p
}

// TestNoBackendUp checks that with every backend down a connection is
// closed at once, and that its log line says why.
func TestNoBackendUp(t *testing.T) {
	b := startBackend(t, greeter("b"))
	pl := healthPool(t, pool.Options{Checked: true}, b.addr)
	p := startProxy(t, &Server{Pool: pl})
	if err := refused(t, p.addr); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client saw %v, want a reset at once", err)
	}
	rec := p.log.waitEnd(t, EndNoBackend)
	want := `l4: no backend available: pool "db" has no backend up: ` + b.addr + ` down (not checked yet)`
	if rec["error"] != want {
		t.Errorf("error %q, want %q", rec["error"], want)
	}
	pl.SetHealth(pl.Backends()[0], true, "check passed")
	if got := readLine(t, dial(t, p.addr, "")); got != "b" {
		t.Errorf("greeting %q once up, want b", got)
	}
}

// TestDrainKeepsConnections drains a backend under a live connection: the
// connection goes on, new ones go to the other backend.
func TestDrainKeepsConnections(t *testing.T) {
	a, b := startBackend(t, greeter("a")), startBackend(t, greeter("b"))
	pl := healthPool(t, pool.Options{}, a.addr, b.addr)
	p := startProxy(t, &Server{Pool: pl})
	c := dial(t, p.addr, "")
	if got := readLine(t, c); got != "a" {
		t.Fatalf("first connection greeted by %q, want a", got)
	}
	pl.SetAdmin(pl.Backends()[0], pool.Drain)
	for range 5 {
		if got := readLine(t, dial(t, p.addr, "")); got != "b" {
			t.Fatalf("new connection greeted by %q while a drains", got)
		}
	}
	// Long enough to park: the draining connection also wakes.
	time.Sleep(50 * time.Millisecond)
	c.Write([]byte("still here\n"))
	if got := readLine(t, c); got != "still here" {
		t.Fatalf("draining connection echoed %q", got)
	}
	pl.SetAdmin(pl.Backends()[1], pool.Maintenance)
	if err := refused(t, p.addr); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client saw %v with one backend draining and the other in maintenance, want a reset", err)
	}
	rec := p.log.waitEnd(t, EndNoBackend)
	if e := rec["error"].(string); !strings.Contains(e, a.addr+" draining, "+b.addr+" maintenance") {
		t.Errorf("error %q does not list the states", e)
	}
}

// TestOnDown checks what health marking a backend down does to its live
// connections: nothing by default, a reset with on_down close.
func TestOnDown(t *testing.T) {
	for _, closeOn := range []bool{false, true} {
		name := map[bool]string{false: "keep", true: "close"}[closeOn]
		t.Run(name, func(t *testing.T) {
			a, b := startBackend(t, greeter("a")), startBackend(t, greeter("b"))
			pl := healthPool(t, pool.Options{CloseOnDown: closeOn}, a.addr, b.addr)
			p := startProxy(t, &Server{Pool: pl})
			pl.OnDown(p.CloseBackend)
			onA := dial(t, p.addr, "")
			readLine(t, onA)
			onB := dial(t, p.addr, "")
			readLine(t, onB)
			time.Sleep(50 * time.Millisecond) // parked
			pl.SetHealth(pl.Backends()[0], false, "role replica, want primary")
			var err error
			if closeOn {
				// Read without writing first: a write would consume
				// the reset's error and the read would see EOF.
				onA.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err = onA.Read(make([]byte, 1))
			} else {
				onA.Write([]byte("x\n"))
				onA.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err = io.ReadFull(onA, make([]byte, 2))
			}
			if closeOn {
				if !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("read on a connection to the down backend: %v, want a reset", err)
				}
				rec := p.log.waitEnd(t, EndBackendDown)
				if rec["backend"] != a.addr {
					t.Errorf("backend_down record %v", rec)
				}
			} else if err != nil {
				t.Errorf("connection to the down backend broke with on_down keep: %v", err)
			}
			// The other backend's connection is untouched either way.
			onB.Write([]byte("y\n"))
			if got := readLine(t, onB); got != "y" {
				t.Errorf("connection to the healthy backend echoed %q", got)
			}
			if got := readLine(t, dial(t, p.addr, "")); got != "b" {
				t.Errorf("new connection greeted by %q with a down", got)
			}
		})
	}
}

// TestPassiveEjection sends traffic at a dead backend and one that resets
// every connection: both are ejected, and new connections stop trying them.
func TestPassiveEjection(t *testing.T) {
	live := startBackend(t, greeter("live"))
	dead := deadPort(t)
	resetter := startBackend(t, func(c *net.TCPConn) {
		c.SetLinger(0)
		c.Read(make([]byte, 1))
	})
	pl := healthPool(t, pool.Options{PassiveFailures: 2, PassiveBackoff: time.Hour}, dead, resetter.addr, live.addr)
	p := startProxy(t, &Server{Pool: pl})
	bs := pl.Backends()
	for i := 0; bs[0].Up() || bs[1].Up(); i++ {
		if i == 50 {
			t.Fatalf("not ejected after 50 connections: dead %v, resetter %v", bs[0].State(), bs[1].State())
		}
		c, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
		if err != nil {
			continue // reset at once: the connect to dead failed
		}
		c.Write([]byte("hello\n"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		c.Read(make([]byte, 64))
		c.Close()
	}
	after := map[string]bool{}
	for range 5 {
		c := dial(t, p.addr, "")
		if got := readLine(t, c); got != "live" {
			t.Fatalf("greeting %q after the ejections, want live", got)
		}
		after[c.LocalAddr().String()] = true
		c.Close()
	}
	// Their log lines, found by client address: lines of the connections
	// before may still be on their way.
	var recs []map[string]any
	eventually(t, 5*time.Second, "the five log lines", func() bool {
		recs = recs[:0]
		for _, r := range p.log.conns() {
			if after[r["client"].(string)] {
				recs = append(recs, r)
			}
		}
		return len(recs) == 5
	})
	for _, r := range recs {
		if r["retries"] != nil || r["backend"] != live.addr {
			t.Errorf("connection after the ejections: %v", r)
		}
	}
}
