package l4

import (
	"errors"
	"log/slog"
	"time"

	"golang.org/x/sys/unix"
)

// Accept errors back off from minBackoff to maxBackoff, doubling, as
// net/http's server does: EMFILE and friends repeat until something
// changes, and retrying at once would spin a core.
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = time.Second
)

// acceptAll accepts until the queue is empty, a cap is reached, or
// maxAccepts connections have been taken in a row. Slots are taken before
// accepting: past a cap, connections wait in the kernel's queue, where
// they cost nothing, until a release wakes the loop.
func (l *loop) acceptAll() {
	s := l.s
	for range maxAccepts {
		if !s.slots.acquireOrWait(l) {
			l.slotWait = true
			return
		}
		if !s.Limiter.acquireOrWait(l) {
			s.slots.release()
			l.slotWait = true
			return
		}
		fd, peer, err := l.accept(l.lnfd)
		if err != nil {
			s.Limiter.release()
			s.slots.release()
			switch {
			case errors.Is(err, unix.EAGAIN):
				l.acceptMore = false
				return
			case errors.Is(err, unix.EINTR), errors.Is(err, unix.ECONNABORTED):
				continue
			}
			l.backoff = min(max(2*l.backoff, minBackoff), maxBackoff)
			l.acceptAt = l.now + l.backoff
			s.logger().Warn("accept failed", slog.String("listener", s.Name),
				slog.String("error", err.Error()), slog.Duration("retry_in", l.backoff))
			return
		}
		l.backoff = 0
		l.open(fd, peer)
	}
}
