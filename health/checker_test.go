package health

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHysteresis(t *testing.T) {
	tests := []struct {
		name       string
		rise, fall int
		results    string // p: pass, f: fail
		want       string // state after each result: U up, D down; lower case: unchanged
	}{
		{"first pass is up at once", 2, 3, "p", "U"},
		{"first fail is down at once", 2, 3, "f", "D"},
		{"fall after three failures", 2, 3, "pfff", "UuuD"},
		{"a pass restarts the fall count", 2, 3, "pffpfff", "UuuuuuD"},
		{"rise after two passes", 2, 3, "fpp", "DdU"},
		{"a failure restarts the rise count", 2, 3, "fpfpp", "DdddU"},
		{"rise 1 fall 1 follows every result", 1, 1, "pfpf", "UDUD"},
		{"flapping each check never changes", 2, 3, "pfpfpfpf", "Uuuuuuuu"},
		{"down then up then down", 2, 2, "fppff", "DdUuD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h hysteresis
			var got strings.Builder
			for _, r := range tt.results {
				up, changed := h.observe(r == 'p', tt.rise, tt.fall)
				c := map[bool]byte{true: 'u', false: 'd'}[up]
				if changed {
					c -= 'a' - 'A'
				}
				got.WriteByte(c)
			}
			if got.String() != tt.want {
				t.Errorf("results %s: states %s, want %s", tt.results, got.String(), tt.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	tests := []struct {
		name                   string
		c                      Check
		interval, timeout, jit time.Duration
		rise, fall             int
	}{
		{"zero", Check{}, 2 * time.Second, time.Second, 0, 2, 3},
		{"timeout capped at interval", Check{Interval: 500 * time.Millisecond, Timeout: time.Second}, 500 * time.Millisecond, 500 * time.Millisecond, 0, 2, 3},
		{"default timeout capped", Check{Interval: 300 * time.Millisecond}, 300 * time.Millisecond, 300 * time.Millisecond, 0, 2, 3},
		{"jitter capped at half", Check{Interval: time.Second, Jitter: time.Second}, time.Second, time.Second, 500 * time.Millisecond, 2, 3},
		{"negative jitter is none", Check{Jitter: -1}, 2 * time.Second, time.Second, 0, 2, 3},
		{"set", Check{Interval: time.Second, Timeout: 100 * time.Millisecond, Jitter: 10 * time.Millisecond, Rise: 1, Fall: 5},
			time.Second, 100 * time.Millisecond, 10 * time.Millisecond, 1, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.c
			if c.interval() != tt.interval || c.timeout() != tt.timeout || c.jitter() != tt.jit || c.rise() != tt.rise || c.fall() != tt.fall {
				t.Errorf("got interval %v timeout %v jitter %v rise %d fall %d", c.interval(), c.timeout(), c.jitter(), c.rise(), c.fall())
			}
		})
	}
}

func TestJitter(t *testing.T) {
	tests := []struct {
		name     string
		c        Check
		lo, hi   time.Duration // range of nextDelay
		firstMax time.Duration // firstDelay is in [0, firstMax)
	}{
		{"none", Check{Interval: 2 * time.Second}, 2 * time.Second, 2 * time.Second, time.Second},
		{"200ms", Check{Interval: 2 * time.Second, Jitter: 200 * time.Millisecond}, 1800 * time.Millisecond, 2200 * time.Millisecond, time.Second},
		{"short interval spreads the first over it", Check{Interval: 100 * time.Millisecond, Jitter: 50 * time.Millisecond}, 50 * time.Millisecond, 150 * time.Millisecond, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const n = 2000
			minN, maxN, minF, maxF := time.Duration(1<<62), time.Duration(0), time.Duration(1<<62), time.Duration(0)
			for range n {
				d := tt.c.nextDelay()
				if d < tt.lo || d > tt.hi {
					t.Fatalf("nextDelay = %v, want %v..%v", d, tt.lo, tt.hi)
				}
				minN, maxN = min(minN, d), max(maxN, d)
				f := tt.c.firstDelay()
				if f < 0 || f >= tt.firstMax {
					t.Fatalf("firstDelay = %v, want [0, %v)", f, tt.firstMax)
				}
				minF, maxF = min(minF, f), max(maxF, f)
			}
			// Uniform draws cover their range: with 2000 of them the
			// extremes fall within 1% of its ends (missing happens with
			// probability about e^-20).
			span := tt.hi - tt.lo
			if minN > tt.lo+span/100 || maxN < tt.hi-span/100 {
				t.Errorf("nextDelay spans %v..%v, want about %v..%v", minN, maxN, tt.lo, tt.hi)
			}
			if minF > tt.firstMax/100 || maxF < tt.firstMax*99/100 {
				t.Errorf("firstDelay spans %v..%v, want about 0..%v", minF, maxF, tt.firstMax)
			}
		})
	}
}

// TestCheckerVerdicts runs a scripted prober through a Monitor and checks
// every verdict and reason.
func TestCheckerVerdicts(t *testing.T) {
	s := &script{results: []bool{false, true, false, true, true, false, false, false}}
	r := &recorder{}
	m := &Monitor{}
	if err := m.Add(Check{Prober: s, Addr: netip.MustParseAddrPort("127.0.0.1:1"), Interval: 5 * time.Millisecond}, r); err != nil {
		t.Fatal(err)
	}
	m.Start()
	waitFor(t, 5*time.Second, "eight checks", func() bool { return len(r.all()) >= 8 })
	m.Stop()
	n := len(r.all())
	time.Sleep(20 * time.Millisecond)
	if len(r.all()) != n {
		t.Fatal("verdicts after Stop")
	}
	want := []verdict{
		{false, "scripted failure", time.Time{}},
		{false, "check passed", time.Time{}},
		{false, "scripted failure", time.Time{}},
		{false, "check passed", time.Time{}},
		{true, "2 checks passed", time.Time{}},
		{true, "scripted failure", time.Time{}},
		{true, "scripted failure", time.Time{}},
		{false, "scripted failure", time.Time{}},
	}
	for i, w := range want {
		if g := r.all()[i]; g.up != w.up || g.reason != w.reason {
			t.Errorf("verdict %d = %v %q, want %v %q", i, g.up, g.reason, w.up, w.reason)
		}
	}
}

// TestCheckerStreak checks that a StreakTarget gets, with each verdict,
// the passing checks in a row and the rise: a pool needs them to end a
// passive ejection, and the verdict alone hides failures while it is up.
func TestCheckerStreak(t *testing.T) {
	s := &script{results: []bool{false, true, false, true, true, true, false, true}}
	r := &streakRecorder{}
	m := &Monitor{}
	if err := m.Add(Check{Prober: s, Addr: netip.MustParseAddrPort("127.0.0.1:1"), Interval: 5 * time.Millisecond, Rise: 3}, r); err != nil {
		t.Fatal(err)
	}
	m.Start()
	waitFor(t, 5*time.Second, "eight checks", func() bool { return len(r.all()) >= 8 })
	m.Stop()
	passes, rise := r.streaks()
	if want := []int{0, 1, 0, 1, 2, 3, 0, 1}; !slices.Equal(passes[:8], want) {
		t.Errorf("passes %v, want %v", passes[:8], want)
	}
	if !slices.Equal(rise, slices.Repeat([]int{3}, len(rise))) {
		t.Errorf("rise %v, want 3 each time", rise)
	}
	if v := r.all(); v[5].up != true || v[6].up != true || v[6].reason != "scripted failure" {
		t.Errorf("verdicts %v: want up from the sixth check on, through the failure", v)
	}
}

// TestTimeoutReason checks that a check cut off by its timeout says so.
func TestTimeoutReason(t *testing.T) {
	hang := proberFunc(func(ctx context.Context, _ netip.AddrPort) error {
		<-ctx.Done()
		return ctx.Err()
	})
	r := &recorder{}
	m := &Monitor{}
	m.Add(Check{Prober: hang, Addr: netip.MustParseAddrPort("127.0.0.1:1"), Interval: 50 * time.Millisecond, Timeout: 30 * time.Millisecond}, r)
	m.Start()
	defer m.Stop()
	waitFor(t, 5*time.Second, "a verdict", func() bool { return len(r.all()) > 0 })
	if v := r.all()[0]; v.up || v.reason != "timeout after 30ms" {
		t.Errorf("verdict %v %q, want down, timeout after 30ms", v.up, v.reason)
	}
}

// TestStopCutsChecks checks that Stop does not wait for a long check, and
// that a check cut by Stop gives no verdict.
func TestStopCutsChecks(t *testing.T) {
	started := make(chan struct{}, 1)
	hang := proberFunc(func(ctx context.Context, _ netip.AddrPort) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	})
	r := &recorder{}
	m := &Monitor{}
	m.Add(Check{Prober: hang, Addr: netip.MustParseAddrPort("127.0.0.1:1"), Interval: time.Hour, Timeout: time.Hour}, r)
	m.Start()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("no check started within the first-check spread")
	}
	done := make(chan struct{})
	go func() { m.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop waited for the check")
	}
	if len(r.all()) != 0 {
		t.Errorf("verdicts %v after a cut check", r.all())
	}
	if err := m.Add(Check{Prober: TCP{}, Addr: netip.MustParseAddrPort("127.0.0.1:1")}, r); err != ErrStopped {
		t.Errorf("Add after Stop = %v, want ErrStopped", err)
	}
	m.Stop() // idempotent
}

func TestAddChecksArguments(t *testing.T) {
	var m Monitor
	defer m.Stop()
	if err := m.Add(Check{Addr: netip.MustParseAddrPort("127.0.0.1:1")}, &recorder{}); err == nil {
		t.Error("Add without a prober succeeded")
	}
	if err := m.Add(Check{Prober: TCP{}}, &recorder{}); err == nil {
		t.Error("Add without an address succeeded")
	}
}

// TestAddAfterStart checks that a checker added to a running monitor runs.
func TestAddAfterStart(t *testing.T) {
	var m Monitor
	m.Start()
	defer m.Stop()
	r := &recorder{}
	m.Add(Check{Prober: TCP{}, Addr: listenTCP(t, nil), Interval: 10 * time.Millisecond}, r)
	waitFor(t, 5*time.Second, "an up verdict", func() bool { v := r.all(); return len(v) > 0 && v[0].up })
}

// TestKilledBackendGoesDown stops a real listener and checks that the
// checker says down within fall intervals plus the timeout, and up again
// rise intervals after it is back.
func TestKilledBackendGoesDown(t *testing.T) {
	const interval, timeout = 50 * time.Millisecond, 40 * time.Millisecond
	ft := newFlapTarget(t)
	r := &recorder{}
	var m Monitor
	m.Add(Check{Prober: TCP{}, Addr: ft.addr, Interval: interval, Timeout: timeout, Rise: 2, Fall: 3}, r)
	m.Start()
	defer m.Stop()
	waitFor(t, 5*time.Second, "up", func() bool { v := r.changes(); return len(v) > 0 && v[len(v)-1].up })
	killed := time.Now()
	ft.set(false)
	waitFor(t, 5*time.Second, "down", func() bool { v := r.changes(); return !v[len(v)-1].up })
	// Scheduling on a loaded 2-core machine adds some slack.
	v := r.changes()
	if took, bound := v[len(v)-1].at.Sub(killed), 3*interval+timeout; took > bound+100*time.Millisecond {
		t.Errorf("down %v after the kill, want within %v", took, bound)
	}
	if reason := v[len(v)-1].reason; !strings.Contains(reason, "connection refused") {
		t.Errorf("reason %q, want connection refused", reason)
	}
	back := time.Now()
	ft.set(true)
	waitFor(t, 5*time.Second, "up again", func() bool { v := r.changes(); return v[len(v)-1].up })
	v = r.changes()
	if took := v[len(v)-1].at.Sub(back); took > 2*interval+100*time.Millisecond {
		t.Errorf("up %v after the restart, want within %v", took, 2*interval)
	}
}

// TestFlappingBackend opens and closes a real listener every 700 ms: with
// rise and fall the checker changes state at most twice per cycle.
func TestFlappingBackend(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 4 s")
	}
	const phase, cycles = 700 * time.Millisecond, 3
	ft := newFlapTarget(t)
	r := &recorder{}
	var m Monitor
	m.Add(Check{Prober: TCP{}, Addr: ft.addr, Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond, Jitter: 20 * time.Millisecond}, r)
	m.Start()
	start := time.Now()
	for i := range 2 * cycles {
		time.Sleep(time.Until(start.Add(time.Duration(i+1) * phase)))
		ft.set(i%2 == 1)
	}
	m.Stop()
	changes := r.changes()
	// The first verdict sets the starting state; each cycle then adds
	// one down and one up, never more.
	for c := range cycles {
		from, to := start.Add(time.Duration(2*c)*phase), start.Add(time.Duration(2*c+2)*phase)
		n := 0
		for _, v := range changes[1:] {
			if !v.at.Before(from) && v.at.Before(to) {
				n++
			}
		}
		if n > 2 {
			t.Errorf("cycle %d: %d state changes, want at most 2 (%v)", c, n, changes)
		}
	}
	if len(changes) < 2*cycles-1 {
		t.Errorf("%d state changes over %d cycles, want the checker to follow each phase", len(changes), cycles)
	}
}

// flapTarget is a loopback port that can be opened and closed.
type flapTarget struct {
	t    *testing.T
	addr netip.AddrPort
	mu   sync.Mutex
	ln   net.Listener
	wg   sync.WaitGroup
}

func newFlapTarget(t *testing.T) *flapTarget {
	f := &flapTarget{t: t}
	f.set(true)
	f.addr = f.ln.Addr().(*net.TCPAddr).AddrPort()
	t.Cleanup(func() { f.set(false) })
	return f
}

// set opens or closes the port.
func (f *flapTarget) set(open bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !open {
		if f.ln != nil {
			f.ln.Close()
			f.wg.Wait()
			f.ln = nil
		}
		return
	}
	if f.ln != nil {
		return
	}
	addr := "127.0.0.1:0"
	if f.addr.IsValid() {
		addr = f.addr.String()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		f.t.Errorf("reopening %s: %v", addr, err)
		return
	}
	f.ln = ln
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	})
}

// TestWaitFirst checks that WaitFirst returns once every checker has
// reported, and at once for a stopped monitor.
func TestWaitFirst(t *testing.T) {
	var m Monitor
	recs := make([]*recorder, 5)
	for i := range recs {
		recs[i] = &recorder{}
		m.Add(Check{Prober: TCP{}, Addr: listenTCP(t, nil), Interval: 200 * time.Millisecond}, recs[i])
	}
	m.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.WaitFirst(ctx); err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		if v := r.all(); len(v) == 0 || !v[0].up {
			t.Errorf("checker %d: verdicts %v after WaitFirst", i, v)
		}
	}
	m.Stop()
	var idle Monitor
	idle.Add(Check{Prober: TCP{}, Addr: listenTCP(t, nil), Interval: time.Hour}, &recorder{})
	idle.Start()
	idle.Stop()
	if err := idle.WaitFirst(ctx); err != nil {
		t.Errorf("WaitFirst on a stopped monitor: %v", err)
	}
}

// TestRemove checks that Remove stops the checker of one target, cutting
// its check short, while the others go on; and that a checker removed
// before Start neither runs nor holds up WaitFirst.
func TestRemove(t *testing.T) {
	started := make(chan struct{}, 1)
	hang := proberFunc(func(ctx context.Context, _ netip.AddrPort) error {
		select {
		case started <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return ctx.Err()
	})
	var m Monitor
	defer m.Stop()
	gone, kept, early := &recorder{}, &recorder{}, &recorder{}
	m.Add(Check{Prober: hang, Addr: netip.MustParseAddrPort("127.0.0.1:1"), Interval: time.Hour, Timeout: time.Hour}, gone)
	m.Add(Check{Prober: TCP{}, Addr: listenTCP(t, nil), Interval: 10 * time.Millisecond}, kept)
	m.Add(Check{Prober: TCP{}, Addr: listenTCP(t, nil), Interval: 10 * time.Millisecond}, early)
	if n := m.Remove(early); n != 1 {
		t.Errorf("Remove before Start = %d, want 1", n)
	}
	m.Start()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("no check started within the first-check spread")
	}
	done := make(chan int)
	go func() { done <- m.Remove(gone) }()
	select {
	case n := <-done:
		if n != 1 {
			t.Errorf("Remove = %d, want 1", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Remove waited for the check")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.WaitFirst(ctx); err != nil {
		t.Fatalf("WaitFirst with removed checkers: %v", err)
	}
	n := len(kept.all())
	waitFor(t, 5*time.Second, "more verdicts on the kept target", func() bool { return len(kept.all()) > n+2 })
	if v := gone.all(); len(v) != 0 {
		t.Errorf("verdicts %v on the removed target", v)
	}
	if v := early.all(); len(v) != 0 {
		t.Errorf("verdicts %v on the target removed before Start", v)
	}
	if n := m.Remove(gone); n != 0 {
		t.Errorf("second Remove = %d, want 0", n)
	}
}
