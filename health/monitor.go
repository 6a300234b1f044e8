package health

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
)

// Monitor owns the checkers of a set of backends: one goroutine each,
// started by Start (or by Add, after it) and stopped and joined by Stop, or
// one target at a time by Remove.
type Monitor struct {
	// Logger receives a debug line for every failed check. Nil means
	// slog.Default(). State changes are the Target's to log.
	Logger *slog.Logger

	mu      sync.Mutex
	all     []*checker
	pending []*checker
	ctx     context.Context // set by Start
	cancel  context.CancelFunc
	stopped bool
	wg      sync.WaitGroup
}

// ErrStopped is returned by Add after Stop.
var ErrStopped = errors.New("health: monitor stopped")

// Add checks t as c says. Before Start the checker waits for it; after, it
// starts at once.
func (m *Monitor) Add(c Check, t Target) error {
	if c.Prober == nil || !c.Addr.IsValid() || t == nil {
		return errors.New("health: a check needs a prober, an address and a target")
	}
	log := m.Logger
	if log == nil {
		log = slog.Default()
	}
	ch := &checker{Check: c, target: t, log: log, first: make(chan struct{})}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.stopped {
		m.all = append(m.all, ch)
	}
	switch {
	case m.stopped:
		return ErrStopped
	case m.ctx != nil:
		m.launch(ch)
	default:
		m.pending = append(m.pending, ch)
	}
	return nil
}

// Start starts every checker added so far. It does nothing after the first
// call or after Stop.
func (m *Monitor) Start() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx != nil || m.stopped {
		return
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	for _, ch := range m.pending {
		m.launch(ch)
	}
	m.pending = nil
}

// launch starts ch under its own context, so that Remove can stop it
// alone. The caller holds m.mu, after Start.
func (m *Monitor) launch(ch *checker) {
	ctx, cancel := context.WithCancel(m.ctx)
	ch.cancel, ch.done = cancel, make(chan struct{})
	m.wg.Go(func() {
		defer close(ch.done)
		defer cancel()
		ch.run(ctx)
	})
}

// Remove stops the checkers reporting to t, cutting short a check under
// way, and waits for them: once it returns, t hears nothing more from
// them. A pool calls it for the backends it no longer has, while the
// checkers of the others go on with their verdicts. t is compared with
// the Targets given to Add by ==, so it must be of a comparable type (a
// pointer, or a struct of pointers). It returns how many it stopped.
func (m *Monitor) Remove(t Target) int {
	m.mu.Lock()
	var stopped []*checker
	m.all = slices.DeleteFunc(m.all, func(ch *checker) bool {
		if ch.target != t {
			return false
		}
		stopped = append(stopped, ch)
		return true
	})
	m.pending = slices.DeleteFunc(m.pending, func(ch *checker) bool { return ch.target == t })
	for _, ch := range stopped {
		if ch.cancel != nil {
			ch.cancel()
		}
	}
	m.mu.Unlock()
	for _, ch := range stopped {
		if ch.done != nil {
			<-ch.done
		} else {
			// Never started: WaitFirst must not wait for it.
			close(ch.first)
		}
	}
	return len(stopped)
}

// Stop stops every checker, cutting short the checks under way, and waits
// for them. It may be called more than once.
func (m *Monitor) Stop() {
	m.mu.Lock()
	m.stopped = true
	if m.cancel != nil {
		m.cancel()
	}
	m.mu.Unlock()
	m.wg.Wait()
}

// WaitFirst waits until every checker added so far has given its first
// verdict (or been stopped), or ctx ends. A proxy that waits for it before
// accepting starts with every backend's state known: connections wait in
// the kernel's accept queue for a moment rather than being refused.
func (m *Monitor) WaitFirst(ctx context.Context) error {
	m.mu.Lock()
	all := m.all
	m.mu.Unlock()
	for _, ch := range all {
		select {
		case <-ch.first:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
