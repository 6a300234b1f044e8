package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"
)

// Defaults for a Check's zero-valued fields.
const (
	DefaultInterval = 2 * time.Second
	DefaultTimeout  = time.Second
	DefaultRise     = 2
	DefaultFall     = 3
)

// maxFirstSpread bounds the random delay before a checker's first check:
// spread enough that a big pool does not probe all at once, short enough
// that a freshly started sluice, whose checked backends start down,
// serves within a second.
const maxFirstSpread = time.Second

// Target receives the verdicts on one backend; a pool's backend satisfies
// it through a small adapter.
type Target interface {
	// SetHealth is called after every check with the state rise and fall
	// leave the backend in, and the reason: the check's error text when
	// it failed, else a note that it passed. Most calls repeat the
	// previous state; a target acts on changes.
	SetHealth(up bool, reason string)
}

// A StreakTarget is a Target that also wants the streak behind each
// verdict; the checker then calls SetHealthStreak instead of SetHealth.
// passes is how many checks in a row have passed, this one included (0 if
// it failed), and rise how many bring a down backend up. The verdict alone
// cannot say that checks passed: an up backend stays up through fewer than
// fall failures. A pool uses the streak to end a passive ejection once
// rise checks have passed since it began.
type StreakTarget interface {
	Target
	SetHealthStreak(up bool, reason string, passes, rise int)
}

// Check says how to check one backend. The zero value of each optional
// field is documented.
type Check struct {
	// Prober performs each check. Required.
	Prober Prober
	// Addr is the address probed: the backend's, or its separate check
	// port (such as Patroni's REST API). Required.
	Addr netip.AddrPort
	// Interval is the time from one check's start to the next. Zero means
	// DefaultInterval.
	Interval time.Duration
	// Timeout bounds each check; it is at most Interval. Zero means
	// DefaultTimeout.
	Timeout time.Duration
	// Jitter spreads each interval uniformly over Interval ± Jitter, so
	// checks started together drift apart. Zero or negative means none;
	// it is at most Interval/2.
	Jitter time.Duration
	// Rise is how many checks in a row must pass before a down backend is
	// up again; Fall how many must fail before an up one is down. Zero
	// means DefaultRise and DefaultFall. The first check alone decides
	// the starting state.
	Rise, Fall int
	// Preamble is written first on every TCP connection the prober opens,
	// before anything of its own (and before a TLS handshake), and in
	// front of every datagram a UDP check sends: a PROXY header for a
	// backend that requires one, as HAProxy's check-send-proxy. Nil sends
	// nothing.
	Preamble []byte
}

func (c *Check) interval() time.Duration {
	if c.Interval <= 0 {
		return DefaultInterval
	}
	return c.Interval
}

func (c *Check) timeout() time.Duration {
	if c.Timeout <= 0 {
		return min(DefaultTimeout, c.interval())
	}
	return min(c.Timeout, c.interval())
}

func (c *Check) jitter() time.Duration {
	return min(max(c.Jitter, 0), c.interval()/2)
}

func (c *Check) rise() int { return positiveOr(c.Rise, DefaultRise) }
func (c *Check) fall() int { return positiveOr(c.Fall, DefaultFall) }

func positiveOr(n, def int) int {
	if n <= 0 {
		return def
	}
	return n
}

// firstDelay draws the wait before the first check, in [0, min(Interval,
// maxFirstSpread)).
func (c *Check) firstDelay() time.Duration {
	return rand.N(min(c.interval(), maxFirstSpread))
}

// nextDelay draws the time from one check's start to the next's.
func (c *Check) nextDelay() time.Duration {
	j := c.jitter()
	if j <= 0 {
		return c.interval()
	}
	return c.interval() - j + rand.N(2*j+1)
}

// hysteresis turns check results into a state with rise and fall: a
// backend changes state only after enough results in a row disagree with
// it, so one lost packet does not fail a database over.
type hysteresis struct {
	known bool // the first result has come
	up    bool
	n     int // results in a row against the current state
}

// observe records one result and reports the state and whether it changed.
func (h *hysteresis) observe(pass bool, rise, fall int) (up, changed bool) {
	switch {
	case !h.known:
		h.known, h.up, h.n = true, pass, 0
		return h.up, true
	case pass == h.up:
		h.n = 0
		return h.up, false
	}
	h.n++
	if h.up && h.n >= fall || !h.up && h.n >= rise {
		h.up, h.n = !h.up, 0
		return h.up, true
	}
	return h.up, false
}

// checker runs one Check against one Target.
type checker struct {
	Check
	target Target
	log    *slog.Logger
	first  chan struct{} // closed after the first verdict, or when run returns

	// Set by the Monitor when it starts the checker, under its lock.
	cancel context.CancelFunc // stops this checker alone
	done   chan struct{}      // closed when run has returned
}

// run checks until ctx ends. Checks start at a fixed rate, so a backend
// that dies is seen within Fall intervals plus a timeout.
func (c *checker) run(ctx context.Context) {
	t := time.NewTimer(c.firstDelay())
	defer t.Stop()
	var h hysteresis
	passes := 0 // checks passed in a row
	streak, _ := c.target.(StreakTarget)
	defer func() {
		if !h.known {
			close(c.first)
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		err := c.probe(ctx)
		if ctx.Err() != nil {
			return // stopped mid-check: no verdict
		}
		first := !h.known
		up, changed := h.observe(err == nil, c.rise(), c.fall())
		reason := "check passed"
		if err != nil {
			reason = err.Error()
			c.log.Debug("health check failed", slog.String("addr", c.Addr.String()),
				slog.String("reason", reason), slog.Bool("up", up))
		}
		if changed && up && !first && c.rise() > 1 {
			reason = fmt.Sprintf("%d checks passed", c.rise())
		}
		if err == nil {
			passes++
		} else {
			passes = 0
		}
		if streak != nil {
			streak.SetHealthStreak(up, reason, passes, c.rise())
		} else {
			c.target.SetHealth(up, reason)
		}
		if first {
			close(c.first)
		}
		t.Reset(max(c.nextDelay()-time.Since(start), 0))
	}
}

// probe runs one check under the timeout. A check cut off by the timeout
// says so plainly, rather than with whichever error the cut caused.
func (c *checker) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(withPreamble(ctx, c.Preamble), c.timeout())
	defer cancel()
	err := c.Prober.Probe(ctx, c.Addr)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && isTimeout(err) {
		return fmt.Errorf("timeout after %v", c.timeout())
	}
	return err
}

// isTimeout reports whether err came from a deadline.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
