package discover

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"sluice/internal/pool"
)

// logBuf collects log lines.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), s)
}

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

// TestWatcher follows a host name through a change, a failing resolver
// (the last good set stays, one warning) and its recovery.
func TestWatcher(t *testing.T) {
	f := startFakeDNS(t)
	f.update(func() { f.set("db.test", a("db.test", "10.0.0.1", 0), a("db.test", "10.0.0.2", 0)) })
	logs := &logBuf{}
	var mu sync.Mutex
	var applied []string
	w := &Watcher{
		Name:     "db",
		Source:   Source{Host: "db.test", Port: 5432, Resolver: f.addr, Timeout: time.Second},
		Interval: 2 * time.Second, // retries back off up to it
		Apply: func(bs []pool.BackendOptions) {
			mu.Lock()
			defer mu.Unlock()
			applied = append(applied, show(bs))
		},
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	}
	appliedNow := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), applied...)
	}
	first, err := w.Resolve(context.Background())
	if err != nil || show(first) != "10.0.0.1:5432/1 10.0.0.2:5432/1" {
		t.Fatalf("Resolve = %s, %v", show(first), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { w.Run(ctx) })
	defer func() {
		cancel()
		wg.Wait()
	}()

	f.update(func() { f.set("db.test", a("db.test", "10.0.0.2", 0), a("db.test", "10.0.0.3", 0)) })
	waitFor(t, 10*time.Second, "the change applied", func() bool { return len(appliedNow()) == 1 })
	if got := appliedNow()[0]; got != "10.0.0.2:5432/1 10.0.0.3:5432/1" {
		t.Fatalf("applied %s", got)
	}

	f.update(func() { f.rcode = dnsmessage.RCodeServerFailure })
	waitFor(t, 10*time.Second, "two failed queries", func() bool { return strings.Count(f.log(), "TypeA ") >= 4 })
	f.update(func() { f.rcode = dnsmessage.RCodeSuccess; f.drop("db.test", dnsmessage.TypeA) })
	// An answer with no records is a failure too: the set stays.
	waitFor(t, 10*time.Second, "an empty answer", func() bool { return strings.Count(f.log(), "TypeA ") >= 6 })
	f.update(func() { f.set("db.test", a("db.test", "10.0.0.4", 0)) })
	waitFor(t, 20*time.Second, "the recovery", func() bool { return logs.count("discovery recovered") == 1 })
	waitFor(t, 5*time.Second, "the new set", func() bool { return len(appliedNow()) == 2 })
	if got := appliedNow(); got[1] != "10.0.0.4:5432/1" {
		t.Errorf("applied %v after recovery", got)
	}
	if n := logs.count("discovery failed, keeping the last good set"); n != 1 {
		t.Errorf("%d failure warnings, want 1 (rate-limited):\n%s", n, &logs.buf)
	}
}

// TestWatcherStops checks that Run returns at once when its context ends,
// even in the middle of an exchange with a silent resolver.
func TestWatcherStops(t *testing.T) {
	f := startFakeDNS(t)
	f.update(func() { f.silent = true })
	w := &Watcher{Name: "db", Source: Source{Host: "db.test", Port: 1, Resolver: f.addr, Timeout: time.Hour},
		Apply: func([]pool.BackendOptions) { t.Error("Apply called") }, Logger: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	waitFor(t, 10*time.Second, "a query", func() bool { return f.log() != "" })
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
