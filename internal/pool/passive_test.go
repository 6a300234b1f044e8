package pool

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// rampOf returns b's weight in the current selection relative to the full
// weights of the others: 1..slowStartSteps while ramping, else
// slowStartSteps.
func rampOf(p *Pool, b *Backend) int {
	s := p.sel.Load()
	for i, u := range s.up {
		if u == b {
			full := s.w[(i+1)%len(s.w)] / s.up[(i+1)%len(s.up)].Weight()
			return s.w[i] * slowStartSteps / (b.Weight() * full)
		}
	}
	return 0
}

func TestSlowStart(t *testing.T) {
	for _, bal := range allBalances {
		t.Run(bal.String(), func(t *testing.T) {
			t.Parallel()
			// Steps of 50 ms: long enough that a poll on a loaded
			// machine does not miss most of them.
			const slow = 500 * time.Millisecond
			p, _ := newLogged(t, Options{Balance: bal, Checked: true, SlowStart: slow, TableSize: 1009, Backends: backends(2, 2)})
			runPool(t, p)
			a, b := p.Backends()[0], p.Backends()[1]
			// The first coming up is at full weight at once.
			p.SetHealth(a, true, "")
			p.SetHealth(b, true, "")
			if r := rampOf(p, b); r != slowStartSteps {
				t.Fatalf("first up: ramp %d, want full", r)
			}
			p.SetHealth(b, false, "x")
			start := time.Now()
			p.SetHealth(b, true, "")
			var seen []int
			waitFor(t, 5*time.Second, "the full weight", func() bool {
				r := rampOf(p, b)
				if len(seen) == 0 || seen[len(seen)-1] != r {
					seen = append(seen, r)
				}
				return r == slowStartSteps
			})
			took := time.Since(start)
			if seen[0] != 1 || took < slow*9/10 {
				t.Errorf("ramp %v in %v, want from 1 over about %v", seen, took, slow)
			}
			for i := 1; i < len(seen); i++ {
				if seen[i] <= seen[i-1] {
					t.Errorf("ramp %v does not rise", seen)
				}
			}
			if len(seen) < slowStartSteps/2 {
				t.Errorf("ramp %v: too few steps", seen)
			}
			if s := p.sel.Load(); s.w[0] != 2 || s.w[1] != 2 {
				t.Errorf("weights after the ramp %v, want back to 2, 2", s.w)
			}
		})
	}
}

// TestSlowStartShare checks that a ramping backend gets its share of
// picks: one tenth of its weight at the first step.
func TestSlowStartShare(t *testing.T) {
	p, _ := newLogged(t, Options{Balance: RoundRobin, SlowStart: time.Hour, Backends: backends(1, 1)})
	a, b := p.Backends()[0], p.Backends()[1]
	p.SetHealth(b, false, "x")
	p.SetHealth(b, true, "")
	if m := picks(p, 1100); m[b] != 100 || m[a] != 1000 {
		t.Errorf("picks %v at the first step, want 1000 and 100", m)
	}
	if n := testing.AllocsPerRun(100, func() { p.Pick(client, nil) }); n != 0 {
		t.Errorf("Pick allocates %v times during a slow start", n)
	}
}

func TestPassiveEjection(t *testing.T) {
	const backoff = 40 * time.Millisecond
	p, logs := newLogged(t, Options{PassiveFailures: 3, PassiveBackoff: backoff, Backends: backends(1, 1)})
	runPool(t, p)
	a, b := p.Backends()[0], p.Backends()[1]
	refused := errors.New("connect: connection refused")
	// A success in between restarts the count.
	a.ReportFailure(refused)
	a.ReportFailure(refused)
	a.ReportSuccess()
	a.ReportFailure(refused)
	a.ReportFailure(refused)
	if !a.Up() {
		t.Fatal("ejected without three failures in a row")
	}
	var lengths []time.Duration
	for range 3 {
		start := time.Now()
		for range 5 { // more than enough: the extra ones only count
			a.ReportFailure(refused)
		}
		if a.Up() || a.State() != StateDown {
			t.Fatal("not ejected after three failures in a row")
		}
		if m := picks(p, 100); m[b] != 100 {
			t.Fatalf("picks %v while ejected", m)
		}
		waitFor(t, 5*time.Second, "the ejection to end", a.Up)
		lengths = append(lengths, time.Since(start))
	}
	// It keeps failing, so each ejection doubles.
	for i, want := range []time.Duration{backoff, 2 * backoff, 4 * backoff} {
		if lengths[i] < want {
			t.Errorf("ejection %d lasted %v, want at least %v (all: %v)", i, lengths[i], want, lengths)
		}
	}
	r := logs.records("backend ejected")
	if len(r) != 3 || r[0]["reason"] != "connect: connection refused" || r[1]["backoff"] != float64(2*backoff) {
		t.Errorf("ejection records %v", r)
	}
	if n := len(logs.records("backend back from ejection")); n != 3 {
		t.Errorf("%d return records, want 3", n)
	}
}

func TestPassiveBackoffCap(t *testing.T) {
	p, _ := newLogged(t, Options{PassiveFailures: 1, PassiveBackoff: time.Millisecond, Backends: backends(1)})
	a := p.Backends()[0]
	for range 10 {
		a.ReportFailure(nil)
		p.mu.Lock()
		p.leaveEjection(a, time.Now(), "test")
		p.apply(time.Now())
		p.mu.Unlock()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if a.st.backoff != maxBackoffFactor*time.Millisecond {
		t.Errorf("backoff after 10 ejections = %v, want the cap %v", a.st.backoff, maxBackoffFactor*time.Millisecond)
	}
	// Staying in longer than the cap starts it over.
	a.st.returned = time.Now().Add(-time.Second)
	p.eject(a, nil, time.Now())
	if got := time.Until(a.st.ejectUntil); got > 2*time.Millisecond {
		t.Errorf("ejection after a long good spell lasts %v, want the first backoff", got)
	}
}

// TestPassiveEjectionChecked checks that, with active checks, an ejection
// ends once rise checks in a row have passed since it began, whatever the
// backoff; that a streak begun before it does not count; and that no line
// calls the backend up while it is still ejected.
func TestPassiveEjectionChecked(t *testing.T) {
	pass := func(passes int) CheckResult {
		return CheckResult{Up: true, Reason: "check passed", Passes: passes, Rise: 2}
	}
	rising := func(up bool, passes int) CheckResult {
		return CheckResult{Up: up, Reason: "check passed", Passes: passes, Rise: 2}
	}
	fail := func(up bool) CheckResult { return CheckResult{Up: up, Reason: "connect: connection refused", Rise: 2} }
	for _, tc := range []struct {
		name   string
		before []CheckResult // reported before the ejection
		after  []CheckResult // reported after it, the last one ending it
		health []string      // health lines logged after the ejection
	}{
		{"up all along", []CheckResult{pass(1), pass(2), pass(3)}, []CheckResult{pass(4), pass(5)}, nil},
		{"a failed check in between", []CheckResult{pass(1)}, []CheckResult{pass(2), fail(true), pass(1), pass(2)}, nil},
		{"down, then restarted", []CheckResult{pass(1), fail(true), fail(true)},
			[]CheckResult{fail(false), rising(false, 1), rising(true, 2)}, []string{"backend down", "backend up"}},
		{"rising when ejected", []CheckResult{pass(1), fail(true), fail(true), fail(false), rising(false, 1)},
			[]CheckResult{rising(true, 2), pass(3)}, []string{"backend passed its checks, still ejected"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, logs := newLogged(t, Options{Checked: true, PassiveFailures: 2, PassiveBackoff: time.Hour, Backends: backends(1)})
			runPool(t, p)
			a := p.Backends()[0]
			for _, r := range tc.before {
				p.ReportCheck(a, r)
			}
			a.ReportFailure(nil)
			a.ReportFailure(nil)
			if a.Up() {
				t.Fatal("not ejected after two failures")
			}
			for i, r := range tc.after {
				p.ReportCheck(a, r)
				if last := i == len(tc.after)-1; a.Up() != last {
					t.Fatalf("after check %d of %d since the ejection (%+v): up %v", i+1, len(tc.after), r, a.Up())
				}
			}
			var health []string
			msgs := logs.messages()
			for _, m := range msgs[slices.Index(msgs, "backend ejected"):] {
				if strings.HasPrefix(m, "backend up") || strings.HasPrefix(m, "backend down") || strings.HasPrefix(m, "backend passed") {
					health = append(health, m)
				}
			}
			if !slices.Equal(health, tc.health) {
				t.Errorf("health lines after the ejection %q, want %q", health, tc.health)
			}
			if r := logs.records("backend back from ejection"); len(r) != 1 || r[0]["reason"] != "2 checks passed" {
				t.Errorf("return records %v", r)
			}
			e := logs.records("backend ejected")
			if len(e) != 1 || e[0]["until"] != "2 more passing checks in a row" || e[0]["backoff"] != nil {
				t.Errorf("ejection records %v", e)
			}
			if r := logs.records("backend passed its checks, still ejected"); len(r) > 0 && r[0]["until"] != "1 more passing check" {
				t.Errorf("still ejected record %v", r[0])
			}
		})
	}
}

func TestPassiveOff(t *testing.T) {
	p := mustNew(t, Options{Backends: backends(1)})
	a := p.Backends()[0]
	for range 100 {
		a.ReportFailure(nil)
	}
	if !a.Up() || a.failures.Load() != 0 {
		t.Error("failures counted with passive checks off")
	}
}

func TestCloseOnDown(t *testing.T) {
	for _, closeOn := range []bool{false, true} {
		p, _ := newLogged(t, Options{CloseOnDown: closeOn, PassiveFailures: 1, Backends: backends(1, 1)})
		var mu sync.Mutex
		var got []*Backend
		p.OnDown(func(b *Backend) {
			mu.Lock()
			got = append(got, b)
			mu.Unlock()
		})
		a, b := p.Backends()[0], p.Backends()[1]
		// Neither draining nor ejection closes connections.
		p.SetAdmin(b, Drain)
		b.ReportFailure(nil)
		p.SetHealth(a, false, "role replica, want primary")
		p.SetHealth(a, false, "role replica, want primary")
		if a.Closing() != closeOn || b.Closing() {
			t.Errorf("close_on_down %v: Closing = %v, %v", closeOn, a.Closing(), b.Closing())
		}
		want := 0
		if closeOn {
			want = 1
		}
		if len(got) != want || (want == 1 && got[0] != a) {
			t.Errorf("close_on_down %v: OnDown called for %v", closeOn, got)
		}
		p.SetHealth(a, true, "")
		if a.Closing() {
			t.Error("still closing once up again")
		}
	}
}
