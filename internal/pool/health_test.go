package pool

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"slices"
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

// messages returns the messages logged so far, in order.
func (l *logBuf) messages() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.buf.String(), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) == nil {
			out = append(out, r["msg"].(string))
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

// OnAdmin callbacks see every change SetAdmin makes, after it is made
// (the callback may read the new state), and none for a change that is
// no change.
func TestOnAdmin(t *testing.T) {
	p := mustNew(t, Options{Backends: backends(1, 1)})
	a := p.Backends()[0]
	type call struct {
		admin Admin
		state State
	}
	var calls []call
	p.OnAdmin(func(b *Backend, ad Admin) {
		if b != a {
			t.Errorf("callback for %v, want %v", b, a)
		}
		calls = append(calls, call{ad, b.State()})
	})
	p.SetAdmin(a, Drain)
	p.SetAdmin(a, Drain)
	p.SetAdmin(a, Enabled)
	want := []call{{Drain, StateDraining}, {Enabled, StateUp}}
	if !slices.Equal(calls, want) {
		t.Errorf("calls %v, want %v", calls, want)
	}
}
