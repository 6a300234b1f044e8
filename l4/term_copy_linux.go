package l4

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// termBufSize is a copy buffer's size: two TLS records' plaintext.
const termBufSize = 32 << 10

// termBufs holds the copy buffers of goroutine-run connections, so that
// their reads allocate nothing.
var termBufs = sync.Pool{New: func() any { return new([termBufSize]byte) }}

// closeWriter is a stream that can send its end: a TCP FIN, or a TLS
// close_notify.
type closeWriter interface{ CloseWrite() error }

var _ closeWriter = (*net.TCPConn)(nil)

// dirEnd is how one direction of copying ended.
type dirEnd struct {
	eof     bool  // the source sent its end, passed on
	timeout bool  // nothing moved for the idle or half-closed timeout
	failed  int   // the side whose socket failed, if neither above
	err     error // the failure
}

// proxy copies both ways until both have ended, or one fails or times out,
// and says how the connection ended and which side to reset.
func (c *termConn) proxy() (End, int, error) {
	c.first.Store(-1)
	c.touch()
	back := make(chan dirEnd, 1)
	go func() { back <- c.copy(sideBackend) }() // joined below
	var ends [2]dirEnd
	ends[sideClient] = c.copy(sideClient)
	ends[sideBackend] = <-back
	if e := End(c.end.Load()); e != EndNone {
		if e == EndBackendDown {
			return e, sideClient, nil // reset, as the loop does
		}
		return e, -1, nil
	}
	first := int(c.first.Load())
	d := ends[first]
	if d.eof {
		if other := ends[1-first]; !other.eof {
			d = other // the end passed on, then the other side failed
		} else if first == sideBackend {
			return EndBackendClosed, -1, nil
		} else {
			return EndClientClosed, -1, nil
		}
	}
	switch {
	case d.timeout && c.halfClosed.Load():
		return EndHalfClosedTimeout, -1, nil
	case d.timeout:
		return EndIdleTimeout, -1, nil
	case d.failed == sideBackend:
		return EndBackendReset, sideClient, d.err
	default:
		return EndClientReset, sideBackend, d.err
	}
}

// copy moves the bytes from side i to the other until i's end, a failure
// or a timeout. A failure or timeout wakes the other direction, to end.
func (c *termConn) copy(i int) dirEnd {
	src, dst := c.stream[i], c.stream[1-i]
	buf := termBufs.Get().(*[termBufSize]byte)
	defer termBufs.Put(buf)
	answered := false
	for {
		// One deadline for both calls: the write is bounded by the
		// idle timeout too, so a peer that reads nothing cannot hold
		// the connection past it.
		src.SetReadDeadline(c.deadline())
		if c.cut() {
			// Checked after setting the deadline, which would
			// otherwise undo the one in the past that cut it.
			return dirEnd{failed: -1}
		}
		n, err := src.Read(buf[:])
		if n > 0 {
			c.touch()
			if i == sideBackend && !answered {
				answered = true
				c.be.ReportSuccess()
			}
			dst.SetWriteDeadline(c.deadline())
			if c.cut() {
				return dirEnd{failed: -1}
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				if errors.Is(werr, os.ErrDeadlineExceeded) && !c.cut() {
					// The other side read nothing for the
					// timeout: an idle end, not a failure.
					return c.ended(i, dirEnd{timeout: true})
				}
				return c.ended(i, dirEnd{failed: 1 - i, err: fmt.Errorf("writing to the %s: %w", sideNames[1-i], werr)})
			}
			c.n[i] += int64(n)
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			// Which side ended first is settled before its end is
			// passed on: the other side may answer it with its own
			// at once.
			d := c.ended(i, dirEnd{eof: true})
			c.passEnd(i)
			return d
		case errors.Is(err, os.ErrDeadlineExceeded) && !c.cut():
			if c.idle() < c.timeout() {
				continue // the other direction moved bytes meanwhile
			}
			return c.ended(i, dirEnd{timeout: true})
		default:
			return c.ended(i, dirEnd{failed: i, err: fmt.Errorf("reading from the %s: %w", sideNames[i], err)})
		}
	}
}

// ended records which direction ended first and, unless it ended with its
// source's end (the other goes on half-closed), wakes the other to end.
func (c *termConn) ended(i int, d dirEnd) dirEnd {
	first := c.first.CompareAndSwap(-1, int32(i))
	if first && !d.eof {
		c.stop.Store(true)
		past := time.Unix(1, 0)
		c.raw[sideClient].SetDeadline(past)
		c.raw[sideBackend].SetDeadline(past)
	}
	return d
}

// passEnd passes side i's end on to the other side, which is read from
// then on within the half-closed timeout.
func (c *termConn) passEnd(i int) {
	o := 1 - i
	if c.stream[o] != net.Conn(c.raw[o]) {
		if cw, ok := c.stream[o].(closeWriter); ok {
			cw.CloseWrite() // TLS close_notify
		}
	}
	c.raw[o].CloseWrite()
	c.halfClosed.Store(true)
	c.stream[o].SetReadDeadline(c.deadline())
}

// cut reports whether the connection is ending: the other direction
// failed or timed out, or it was aborted.
func (c *termConn) cut() bool {
	return c.stop.Load() || c.end.Load() != uint32(EndNone)
}

func (c *termConn) touch() { c.last.Store(int64(time.Since(c.start))) }

// idle is how long no byte has moved either way.
func (c *termConn) idle() time.Duration {
	return time.Since(c.start) - time.Duration(c.last.Load())
}

func (c *termConn) timeout() time.Duration {
	if c.halfClosed.Load() {
		return c.s.halfClosedTimeout()
	}
	return c.s.idleTimeout()
}

func (c *termConn) deadline() time.Time {
	return c.start.Add(time.Duration(c.last.Load()) + c.timeout())
}
