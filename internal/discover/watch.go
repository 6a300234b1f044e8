package discover

import (
	"context"
	"log/slog"
	"time"

	"sluice/internal/pool"
)

// Defaults and bounds of a Watcher's timing.
const (
	// DefaultInterval is the longest time between two resolutions when
	// Watcher.Interval is zero.
	DefaultInterval = 30 * time.Second
	// MinInterval is the shortest: a TTL of 0 or 1 (dnsmasq's default for
	// its own records is 0) must not become a query loop.
	MinInterval = time.Second
	// failLogEvery bounds the warnings of a resolver that keeps failing:
	// the first failure is logged, then one line a minute says it goes on.
	failLogEvery = time.Minute
)

// Watcher keeps a pool's backends in line with DNS. Resolve gives the
// first set; Run re-resolves, after the records' TTL but at most Interval
// apart, and calls Apply with every set that differs from the last. While
// the resolver fails (or answers with no records), the last good set stays
// and the failure is logged, at most once a minute; retries come sooner,
// from MinInterval doubling up to Interval.
type Watcher struct {
	// Name names the pool in logs.
	Name string
	// Source says what to resolve.
	Source Source
	// Interval is the longest time between resolutions. Zero means
	// DefaultInterval; it is at least MinInterval.
	Interval time.Duration
	// Apply receives each new set of backends, sorted by address, on
	// Run's goroutine. Required for Run.
	Apply func([]pool.BackendOptions)
	// Logger receives failures and recoveries. Nil means slog.Default().
	Logger *slog.Logger

	// Owned by Resolve, then by Run.
	last     []pool.BackendOptions // the last good set; nil before one
	wait     time.Duration         // until the next resolution
	failures int                   // in a row
	logged   time.Time             // when a failure was last logged
}

func (w *Watcher) interval() time.Duration {
	if w.Interval <= 0 {
		return DefaultInterval
	}
	return max(w.Interval, MinInterval)
}

func (w *Watcher) log() *slog.Logger {
	if w.Logger == nil {
		return slog.Default()
	}
	return w.Logger
}

// Resolve resolves the source once and records the result as the last
// good set, returning it; on an error the set is empty and Run retries
// soon. Call it before Run, not while Run runs.
func (w *Watcher) Resolve(ctx context.Context) ([]pool.BackendOptions, error) {
	res, err := w.Source.Resolve(ctx)
	w.note(err, time.Now())
	if err != nil {
		return nil, err
	}
	w.last = res.Backends
	w.wait = min(max(res.TTL, MinInterval), w.interval())
	return res.Backends, nil
}

// Run re-resolves until ctx ends, calling Apply on each change. It is the
// Watcher's one goroutine: the caller starts it, and cancels ctx and
// waits for it to stop.
func (w *Watcher) Run(ctx context.Context) {
	if w.wait == 0 {
		w.wait = MinInterval // Resolve was not called, or failed
	}
	t := time.NewTimer(w.wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.step(ctx)
		t.Reset(w.wait)
	}
}

// step resolves once, applies a change, and sets the next wait.
func (w *Watcher) step(ctx context.Context) {
	res, err := w.Source.Resolve(ctx)
	if ctx.Err() != nil {
		return // stopping: no verdict
	}
	w.note(err, time.Now())
	if err != nil {
		w.wait = min(MinInterval<<min(w.failures-1, 16), w.interval())
		return
	}
	w.wait = min(max(res.TTL, MinInterval), w.interval())
	if equal(res.Backends, w.last) {
		return
	}
	w.last = res.Backends
	w.Apply(res.Backends)
}

// note counts and logs a resolution's outcome: the first failure of a run
// at once, then one line a minute while they go on, and the recovery.
func (w *Watcher) note(err error, now time.Time) {
	attrs := []any{slog.String("pool", w.Name), slog.String("source", w.Source.String())}
	if err == nil {
		if w.failures > 0 {
			w.log().Info("discovery recovered", append(attrs, slog.Int("failures", w.failures))...)
		}
		w.failures = 0
		return
	}
	w.failures++
	if w.failures > 1 && now.Sub(w.logged) < failLogEvery {
		return
	}
	w.logged = now
	msg := "discovery failed, keeping the last good set"
	if w.last == nil {
		msg = "discovery failed, the pool has no backends yet"
	}
	w.log().Warn(msg, append(attrs, slog.Int("backends", len(w.last)), slog.Int("failures", w.failures),
		slog.String("error", err.Error()))...)
}
