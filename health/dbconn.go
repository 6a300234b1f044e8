package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"
)

// ErrWrongRole is wrapped by the errors of database probes that reached a healthy server
// with another replication role than the check requires ("role replica, want primary").
var ErrWrongRole = errors.New("health: wrong role")

// dbReason is a probe failure whose text is the short reason logged on a state change
// ("connect refused", "timeout after 2s waiting for the PING reply") while the error it
// wraps stays available to errors.Is and errors.As.
type dbReason struct {
	reason string
	err    error
}

func (e *dbReason) Error() string { return e.reason }
func (e *dbReason) Unwrap() error { return e.err }

// dbBudget is how long a probe started at start may run: the time left to ctx's deadline,
// rounded so that a 2s check timeout reads "2s" in reasons. Zero means no deadline.
func dbBudget(ctx context.Context, start time.Time) time.Duration {
	d, ok := ctx.Deadline()
	if !ok {
		return 0
	}
	return d.Sub(start).Round(10 * time.Millisecond)
}

// dbFail describes err, which happened while doing (for example "waiting for the PING
// reply"). A deadline becomes "timeout after 2s waiting for the PING reply" (the checker
// shortens it to its own "timeout after 2s"); anything else is "doing: why", without the
// addresses of a net error.
func dbFail(ctx context.Context, start time.Time, doing string, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(ctx.Err(), context.DeadlineExceeded) {
		if b := dbBudget(ctx, start); b > 0 {
			return &dbReason{fmt.Sprintf("timeout after %v %s", b, doing), err}
		}
		return &dbReason{"timeout " + doing, err}
	}
	return shortError(doing, err)
}

// dbDial connects to addr for one probe (see dial). Cancelling ctx, as a stopping
// checker does, also interrupts any read or write at once. The caller calls the
// returned stop function and closes the connection when done.
func dbDial(ctx context.Context, addr netip.AddrPort, start time.Time) (net.Conn, func() bool, error) {
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, nil, dbFail(ctx, start, "connecting", err)
		}
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() {
		// A deadline in the past wakes blocked reads and writes with a timeout error.
		_ = conn.SetDeadline(time.Unix(1, 0))
	})
	return conn, stop, nil
}
