package l4

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"sluice/internal/pool"
)

// held watches proxied connections for their end (EOF or reset): when
// each client saw it.
type held struct {
	mu sync.Mutex
	at []time.Time
	wg sync.WaitGroup
}

// holdConns opens n proxied connections through addr, each past the
// backend's greeting, and watches them.
func holdConns(t *testing.T, addr string, n int) *held {
	t.Helper()
	h := &held{}
	// Registered first, so it runs after the connections are closed.
	t.Cleanup(h.wg.Wait)
	for range n {
		c := dial(t, addr, "")
		readLine(t, c)
		h.wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(time.Minute))
			_, err := c.Read(make([]byte, 1))
			if err == nil || isTimeout(err) {
				return // not ended: not counted
			}
			h.mu.Lock()
			h.at = append(h.at, time.Now())
			h.mu.Unlock()
		})
	}
	return h
}

func (h *held) ended() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.at)
}

// ends returns when each connection that ended saw its end, in order.
func (h *held) ends() []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	at := slices.Clone(h.at)
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	return at
}

// maxInWindow returns the most ends seen within any window of length w
// (half-open: [t, t+w)).
func maxInWindow(at []time.Time, w time.Duration) int {
	most, j := 0, 0
	for i := range at {
		for j < len(at) && at[j].Sub(at[i]) < w {
			j++
		}
		most = max(most, j-i)
	}
	return most
}

// The closes the drain deadline leaves are spread at drain_rate: 500 held
// connections at 100/s take about 5 s, with no 1 s window seeing more
// than the rate allows, and all end. Without a Pacer they all end within
// a few milliseconds, and the spread and window checks fail.
func TestShutdownClosesAtDrainRate(t *testing.T) {
	const n, rate = 500, 100
	b := startBackend(t, greeter("b"))
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr), DrainPacer: NewPacer(rate, time.Second)})
	h := holdConns(t, p.addr, n)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
	}
	took := time.Since(start)
	eventually(t, 10*time.Second, "every client to see its end", func() bool { return h.ended() == n })
	at := h.ends()
	spread := at[n-1].Sub(at[0])
	// 499 gaps of at least 10 ms each.
	if min := time.Duration(n-1) * time.Second / rate; spread < min-50*time.Millisecond {
		t.Errorf("%d closes spread over %v, want at least %v at %d/s", n, spread, min, rate)
	}
	if took > 20*time.Second {
		t.Errorf("Shutdown took %v for %d connections at %d/s", took, n, rate)
	}
	// The proxy's closes, as its log lines time them (each written
	// right after its close, and the next close not begun until 1/rate
	// after the last one was done): never more than rate in a second.
	var closed []time.Time
	for _, r := range p.log.conns() {
		if r["end"] != EndDrain.String() {
			t.Fatalf("connection ended %v, want %s", r["end"], EndDrain)
		}
		at, err := time.Parse(time.RFC3339Nano, r["time"].(string))
		if err != nil {
			t.Fatal(err)
		}
		closed = append(closed, at)
	}
	if len(closed) != n {
		t.Errorf("%d connection lines, want %d", len(closed), n)
	}
	slices.SortFunc(closed, func(a, b time.Time) int { return a.Compare(b) })
	if most := maxInWindow(closed, time.Second); most > rate {
		t.Errorf("%d closes within one second, want at most %d", most, rate)
	}
	// The clients see them a little later each, by delays that vary on
	// a loaded machine: logged, not checked.
	t.Logf("%d closes over %v (Shutdown %v), at most %d in any 1 s window (%d as the clients saw them)",
		n, spread, took, maxInWindow(closed, time.Second), maxInWindow(at, time.Second))
}

// Close during a paced drain ends it at once: a second signal must not
// wait for the rate.
func TestCloseEndsPacedDrain(t *testing.T) {
	const n = 20
	b := startBackend(t, greeter("b"))
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr), DrainPacer: NewPacer(1, time.Second)})
	h := holdConns(t, p.addr, n)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Shutdown(ctx) }()
	eventually(t, 5*time.Second, "the paced drain to start", func() bool { return h.ended() >= 1 })
	start := time.Now()
	p.Close()
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
	}
	eventually(t, 5*time.Second, "every client to see its end", func() bool { return h.ended() == n })
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %v to end a paced drain of %d at 1/s", d, n)
	}
}

// DrainBackend closes one backend's connections at the pace and leaves
// the others'.
func TestDrainBackendPaced(t *testing.T) {
	const n, rate = 40, 50
	b1 := startBackend(t, greeter("b1"))
	b2 := startBackend(t, greeter("b2"))
	pl := newPool(t, pool.RoundRobin, 0, b1.addr, b2.addr)
	p := startProxy(t, &Server{Pool: pl, DrainPacer: NewPacer(rate, time.Second)})
	h := holdConns(t, p.addr, 2*n)
	var gone *pool.Backend
	for _, b := range pl.Backends() {
		if b.String() == b1.addr {
			gone = b
		}
	}
	if gone.Active() != n {
		t.Fatalf("%d connections to %s, want %d", gone.Active(), gone, n)
	}
	start := time.Now()
	if got := p.DrainBackend(context.Background(), gone); got != n {
		t.Errorf("DrainBackend closed %d, want %d", got, n)
	}
	took := time.Since(start)
	if min := time.Duration(n-1) * time.Second / rate; took < min-50*time.Millisecond {
		t.Errorf("%d closes took %v, want at least %v at %d/s", n, took, min, rate)
	}
	eventually(t, 5*time.Second, "the drained backend's clients to see their end", func() bool { return h.ended() == n })
	if gone.Active() != 0 {
		t.Errorf("%d connections left to %s", gone.Active(), gone)
	}
	for _, r := range p.log.conns() {
		if r["backend"] != b1.addr || r["end"] != EndDrain.String() {
			t.Errorf("closed %v with end=%v, want only %s's with end=drain", r["backend"], r["end"], b1.addr)
		}
	}
	// A drain stopped by its context closes nothing more.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got := p.DrainBackend(ctx, gone); got != 0 {
		t.Errorf("DrainBackend with a done context closed %d", got)
	}
}

func TestPacerSpacing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		p     *Pacer
		paced bool
	}{
		{"nil", nil, false},
		{"zero", NewPacer(0, time.Second), false},
		{"no period", NewPacer(10, 0), false},
		{"100/s", NewPacer(100, time.Second), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.Paced(); got != tc.paced {
				t.Fatalf("Paced() = %v, want %v", got, tc.paced)
			}
			start := time.Now()
			for range 5 {
				if !tc.p.wait(context.Background(), nil) {
					t.Fatal("wait reported false")
				}
				tc.p.done()
			}
			d := time.Since(start)
			if tc.paced && d < 40*time.Millisecond {
				t.Errorf("5 closes at 100/s took %v, want at least 40ms", d)
			}
			if !tc.paced && d > 100*time.Millisecond {
				t.Errorf("5 unpaced closes took %v", d)
			}
		})
	}
}

// A wait given up (its drain stopped) gives its reservation back: the
// next close is due one interval after the last close that happened, not
// after the one that did not.
func TestPacerWaitGivenUpKeepsNoReservation(t *testing.T) {
	p := NewPacer(1, time.Second)
	if !p.wait(context.Background(), nil) {
		t.Fatal("first wait reported false")
	}
	p.done()
	last := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if p.wait(ctx, nil) {
		t.Fatal("a wait whose context ended reported true")
	}
	if !p.wait(context.Background(), nil) {
		t.Fatal("third wait reported false")
	}
	// Due at last+1s; a kept reservation would make it last+2s.
	if d := time.Since(last); d > 1800*time.Millisecond {
		t.Errorf("the close after a given-up wait came %v after the last, want about 1s", d)
	}
}

// Connections that end TLS (run on goroutines) are paced too, one at a
// time: 6 at 20/s take at least 250ms.
func TestTLSPacedDrain(t *testing.T) {
	const n, rate = 6, 20
	be := startBackend(t, func(c *net.TCPConn) { io.Copy(c, c) })
	p, cfg := startTLSProxy(t, &Server{Name: "t", Pool: newPool(t, pool.RoundRobin, 0, be.addr), DrainPacer: NewPacer(rate, time.Second)})
	var cs []*tls.Conn
	for range n {
		c := dialTLS(t, p.addr, cfg)
		c.Write([]byte("x"))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d < time.Duration(n-1)*time.Second/rate {
		t.Errorf("%d TLS connections closed in %v, faster than %d/s", n, d, rate)
	}
	for _, c := range cs {
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Error("a TLS connection outlived the drain")
		}
	}
	if got := len(p.log.conns()); got != n {
		t.Errorf("%d connection lines, want %d", got, n)
	}
}
