package pool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// logBuf collects a pool's log records.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// records returns the records logged so far with message msg.
func (l *logBuf) records(msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(l.buf.String(), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) == nil && r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

func newLogged(t *testing.T, o Options) (*Pool, *logBuf) {
	t.Helper()
	l := &logBuf{}
	o.Logger = slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return mustNew(t, o), l
}

// picks counts the backends n picks for random clients return.
func picks(p *Pool, n int) map[*Backend]int {
	r := rand.New(rand.NewPCG(1, 2))
	m := make(map[*Backend]int)
	for range n {
		m[p.Pick(randomClient(r), nil)]++
	}
	return m
}

// runPool runs p's timed steps until the test ends.
func runPool(t *testing.T, p *Pool) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { p.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestBackupWaitsForFirstChecks checks that at start a backup checked
// before the primaries takes no traffic until they have been checked.
func TestBackupWaitsForFirstChecks(t *testing.T) {
	o := Options{Checked: true, Backends: backends(1, 1, 1)}
	o.Backends[2].Backup = true
	p, _ := newLogged(t, o)
	bs := p.Backends()
	p.SetHealth(bs[2], true, "check passed")
	if b := p.Pick(client, nil); b != nil {
		t.Fatalf("picked %s before the primaries were checked", b)
	}
	p.SetHealth(bs[0], false, "connect: connection refused")
	if b := p.Pick(client, nil); b != nil {
		t.Fatalf("picked %s with a primary still unchecked", b)
	}
	p.SetHealth(bs[1], false, "connect: connection refused")
	if b := p.Pick(client, nil); b != bs[2] {
		t.Fatalf("picked %v with every primary down, want the backup", b)
	}
}

func TestCheckedStartsDown(t *testing.T) {
	p, logs := newLogged(t, Options{Name: "db", Checked: true, Backends: backends(1, 1)})
	a, b := p.Backends()[0], p.Backends()[1]
	if a.Up() || a.State() != StateDown || p.Pick(client, nil) != nil {
		t.Fatal("a checked backend is up before its first check")
	}
	if want := `pool "db" has no backend up: 10.0.0.1:80 down (not checked yet), 10.0.0.2:80 down (not checked yet)`; p.Unavailable() != want {
		t.Errorf("Unavailable() = %q, want %q", p.Unavailable(), want)
	}
	p.SetHealth(b, false, "connect: connection refused")
	p.SetHealth(a, true, "check passed")
	if m := picks(p, 100); m[a] != 100 {
		t.Fatalf("picks %v, want only %s", m, a)
	}
	if p.Unavailable() != "" {
		t.Errorf("Unavailable() = %q with a backend up", p.Unavailable())
	}
	// The first verdict is logged whichever it is, with its reason.
	down := logs.records("backend down")
	if len(down) != 1 || down[0]["backend"] != "10.0.0.2:80" || down[0]["reason"] != "connect: connection refused" {
		t.Errorf("down records %v", down)
	}
	if up := logs.records("backend up"); len(up) != 1 || up[0]["reason"] != "check passed" || up[0]["pool"] != "db" {
		t.Errorf("up records %v", up)
	}
	// Repeated verdicts change nothing and log nothing.
	for range 5 {
		p.SetHealth(a, true, "check passed")
		p.SetHealth(b, false, "connect: connection refused")
	}
	if n := len(logs.records("backend up")) + len(logs.records("backend down")); n != 2 {
		t.Errorf("%d health records after repeated verdicts, want 2", n)
	}
}

func TestAdminStates(t *testing.T) {
	for _, bal := range allBalances {
		t.Run(bal.String(), func(t *testing.T) {
			p, logs := newLogged(t, Options{Balance: bal, Backends: []BackendOptions{
				{Addr: backends(1)[0].Addr}, {Addr: backends(1, 1)[1].Addr, Admin: Maintenance},
			}})
			a, b := p.Backends()[0], p.Backends()[1]
			if b.State() != StateMaintenance || b.Up() {
				t.Fatalf("backend configured in maintenance is %v", b.State())
			}
			if m := picks(p, 200); m[a] != 200 {
				t.Fatalf("picks %v with b in maintenance", m)
			}
			p.SetAdmin(b, Enabled)
			if m := picks(p, 200); m[b] == 0 {
				t.Fatalf("picks %v with b enabled", m)
			}
			// Draining: a connection already counted stays counted; no
			// new one is picked.
			a.Acquire()
			p.SetAdmin(a, Drain)
			if a.State() != StateDraining || a.Active() != 1 {
				t.Errorf("draining: state %v, active %d", a.State(), a.Active())
			}
			if m := picks(p, 200); m[b] != 200 {
				t.Fatalf("picks %v with a draining", m)
			}
			a.Release()
			// Health changes in maintenance are logged at debug only.
			p.SetAdmin(a, Maintenance)
			p.SetHealth(a, false, "connect: connection refused")
			if r := logs.records("backend down"); len(r) != 1 || r[0]["level"] != "DEBUG" {
				t.Errorf("down in maintenance logged as %v", r)
			}
			p.SetAdmin(a, Enabled)
			if a.State() != StateDown {
				t.Errorf("back from maintenance while failing checks: %v, want down", a.State())
			}
			if r := logs.records("backend admin state"); len(r) != 4 || r[0]["admin"] != "enabled" {
				t.Errorf("admin records %v", r)
			}
		})
	}
}

func TestBackup(t *testing.T) {
	for _, bal := range allBalances {
		t.Run(bal.String(), func(t *testing.T) {
			o := Options{Balance: bal, Backends: backends(1, 1, 1, 1)}
			o.Backends[2].Backup, o.Backends[3].Backup = true, true
			p, logs := newLogged(t, o)
			bs := p.Backends()
			if m := picks(p, 400); m[bs[2]]+m[bs[3]] != 0 || m[bs[0]] == 0 || m[bs[1]] == 0 {
				t.Fatalf("picks %v: backups used while primaries are up", m)
			}
			p.SetHealth(bs[0], false, "x")
			if m := picks(p, 400); m[bs[1]] != 400 {
				t.Fatalf("picks %v with one primary up", m)
			}
			p.SetAdmin(bs[1], Drain)
			if m := picks(p, 400); m[bs[2]] == 0 || m[bs[3]] == 0 || m[bs[2]]+m[bs[3]] != 400 {
				t.Fatalf("picks %v with no primary up: want both backups", m)
			}
			if r := logs.records("pool is using its backup backends"); len(r) != 1 {
				t.Errorf("backup records %v", r)
			}
			p.SetHealth(bs[2], false, "x")
			p.SetHealth(bs[3], false, "x")
			if p.Pick(client, nil) != nil {
				t.Fatal("picked with everything down")
			}
			if r := logs.records("pool has no backend up"); len(r) != 1 || !strings.Contains(r[0]["why"].(string), "10.0.0.2:80 draining") {
				t.Errorf("no-backend records %v", r)
			}
			p.SetHealth(bs[0], true, "check passed")
			if m := picks(p, 400); m[bs[0]] != 400 {
				t.Fatalf("picks %v after a primary came back", m)
			}
			if r := logs.records("pool has backends up"); len(r) != 1 {
				t.Errorf("recovery records %v", r)
			}
		})
	}
}

// rampOf returns b's weight in the current selection relative to the full
// weights of the others: 1..slowStartSteps while ramping, else
// slowStartSteps.
func rampOf(p *Pool, b *Backend) int {
	s := p.sel.Load()
	for i, u := range s.up {
		if u == b {
			full := s.w[(i+1)%len(s.w)] / s.up[(i+1)%len(s.up)].Weight
			return s.w[i] * slowStartSteps / (b.Weight * full)
		}
	}
	return 0
}

func TestSlowStart(t *testing.T) {
	for _, bal := range allBalances {
		t.Run(bal.String(), func(t *testing.T) {
			const slow = 200 * time.Millisecond
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
		p.endEjection(a, time.Now())
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

// TestPassiveEjectionChecked checks that, with active checks, an ejected
// backend comes back only on an up verdict after its backoff.
func TestPassiveEjectionChecked(t *testing.T) {
	p, _ := newLogged(t, Options{Checked: true, PassiveFailures: 2, PassiveBackoff: 30 * time.Millisecond, Backends: backends(1)})
	runPool(t, p)
	a := p.Backends()[0]
	p.SetHealth(a, true, "")
	a.ReportFailure(nil)
	a.ReportFailure(nil)
	p.SetHealth(a, true, "") // during the backoff: not yet
	if a.Up() {
		t.Fatal("back during the backoff")
	}
	time.Sleep(60 * time.Millisecond) // past the backoff: Run must not end it
	if a.Up() {
		t.Fatal("back after the backoff without a check")
	}
	p.SetHealth(a, true, "")
	if !a.Up() {
		t.Fatal("not back after a passing check past the backoff")
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

func TestAdminText(t *testing.T) {
	for _, a := range []Admin{Enabled, Drain, Maintenance} {
		var got Admin
		if err := got.UnmarshalText([]byte(a.String())); err != nil || got != a {
			t.Errorf("round trip of %v: %v, %v", a, got, err)
		}
	}
	var a Admin
	if err := a.UnmarshalText([]byte("disabled")); err == nil || !strings.Contains(err.Error(), "want enabled, drain or maintenance") {
		t.Errorf("UnmarshalText(disabled) = %v", err)
	}
	if StateDraining.String() != "draining" || State(9).String() != "State(9)" {
		t.Error("State names")
	}
}
