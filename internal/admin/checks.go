package admin

import (
	"context"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sluice/health"
	"sluice/internal/pool"
)

// Check is the last active health check of a backend, as the API and the
// status page show it.
type Check struct {
	// At is when the check started.
	At time.Time `json:"at"`
	// Duration is how long it took.
	Duration time.Duration `json:"duration_ns"`
	// Passed says whether it passed; Error is why not.
	Passed bool   `json:"passed"`
	Error  string `json:"error,omitempty"`
}

// Prober returns a health.Prober that runs p, counts its result and
// duration in the metrics and remembers it as b's last check. Wrap each
// backend's prober before the checks start.
func (m *Metrics) Prober(pl *pool.Pool, b *pool.Backend, p health.Prober) health.Prober {
	last := &atomic.Pointer[Check]{}
	m.lastMu.Lock()
	m.last[b] = last
	m.lastMu.Unlock()
	return &timedProber{
		next:    p,
		last:    last,
		passed:  m.checks.WithLabelValues(pl.Name(), b.String(), "pass"),
		failed:  m.checks.WithLabelValues(pl.Name(), b.String(), "fail"),
		seconds: m.checkTime.WithLabelValues(pl.Name(), b.String()),
	}
}

// ForgetChecks drops the check series and the last check of b, which its
// pool no longer has (discovery removed it), so that backends coming and
// going do not leave series behind.
func (m *Metrics) ForgetChecks(pl *pool.Pool, b *pool.Backend) {
	m.lastMu.Lock()
	delete(m.last, b)
	m.lastMu.Unlock()
	m.checks.DeleteLabelValues(pl.Name(), b.String(), "pass")
	m.checks.DeleteLabelValues(pl.Name(), b.String(), "fail")
	m.checkTime.DeleteLabelValues(pl.Name(), b.String())
}

// LastCheck returns b's last active check, or nil if it has had none (or
// is not checked).
func (m *Metrics) LastCheck(b *pool.Backend) *Check {
	m.lastMu.Lock()
	last := m.last[b]
	m.lastMu.Unlock()
	if last == nil {
		return nil
	}
	return last.Load()
}

type timedProber struct {
	next           health.Prober
	last           *atomic.Pointer[Check]
	passed, failed prometheus.Counter
	seconds        prometheus.Observer
}

// Probe implements health.Prober.
func (t *timedProber) Probe(ctx context.Context, addr netip.AddrPort) error {
	start := time.Now()
	err := t.next.Probe(ctx, addr)
	d := time.Since(start)
	c := &Check{At: start, Duration: d, Passed: err == nil}
	if err != nil {
		c.Error = err.Error()
		t.failed.Inc()
	} else {
		t.passed.Inc()
	}
	t.seconds.Observe(d.Seconds())
	t.last.Store(c)
	return err
}
