package health

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestMain fails the package if a test leaves goroutines behind: every
// checker must be joined by Stop, every test server closed.
func TestMain(m *testing.M) {
	base := runtime.NumGoroutine()
	code := m.Run()
	// The fuzzing engine leaves a signal-handling goroutine behind.
	fuzzing := flag.Lookup("test.fuzz") != nil && flag.Lookup("test.fuzz").Value.String() != ""
	if code == 0 && !fuzzing {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > base {
			buf := make([]byte, 1<<20)
			fmt.Fprintf(os.Stderr, "goroutine leak: %d running, %d at start\n%s", n, base, buf[:runtime.Stack(buf, true)])
			code = 1
		}
	}
	os.Exit(code)
}

// verdict is one SetHealth call.
type verdict struct {
	up     bool
	reason string
	at     time.Time
}

// recorder is a Target that keeps every verdict.
type recorder struct {
	mu       sync.Mutex
	verdicts []verdict
}

func (r *recorder) SetHealth(up bool, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.verdicts = append(r.verdicts, verdict{up, reason, time.Now()})
}

// streakRecorder is a StreakTarget that keeps every verdict and the
// streak reported with it.
type streakRecorder struct {
	recorder
	passes, rise []int
}

func (r *streakRecorder) SetHealthStreak(up bool, reason string, passes, rise int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.verdicts = append(r.verdicts, verdict{up, reason, time.Now()})
	r.passes, r.rise = append(r.passes, passes), append(r.rise, rise)
}

func (r *streakRecorder) SetHealth(bool, string) { panic("SetHealth called on a StreakTarget") }

func (r *streakRecorder) streaks() (passes, rise []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.passes), slices.Clone(r.rise)
}

func (r *recorder) all() []verdict {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]verdict(nil), r.verdicts...)
}

// changes returns the verdicts that changed the state, the first included.
func (r *recorder) changes() []verdict {
	var out []verdict
	for i, v := range r.all() {
		if i == 0 || v.up != out[len(out)-1].up {
			out = append(out, v)
		}
	}
	return out
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// proberFunc adapts a function to Prober.
type proberFunc func(ctx context.Context, addr netip.AddrPort) error

func (f proberFunc) Probe(ctx context.Context, addr netip.AddrPort) error { return f(ctx, addr) }

// script is a Prober that passes or fails as its results say, then keeps
// repeating the last one.
type script struct {
	mu      sync.Mutex
	results []bool
	n       int
}

func (s *script) Probe(context.Context, netip.AddrPort) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pass := s.results[min(s.n, len(s.results)-1)]
	s.n++
	if pass {
		return nil
	}
	return errors.New("scripted failure")
}

func (s *script) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// listenTCP returns a loopback listener closed when the test ends; each
// accepted connection is passed to serve (nil: closed at once).
func listenTCP(t *testing.T, serve func(net.Conn)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				if serve != nil {
					c.SetDeadline(time.Now().Add(5 * time.Second))
					serve(c)
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// deadAddr returns a loopback TCP address nothing listens on.
func deadAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}
