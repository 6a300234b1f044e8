package l4

import (
	"errors"
	"os"
	"sync/atomic"
	"time"
)

// Direction states. A direction is run by at most one goroutine at a time;
// the state's compare-and-swaps decide who owns it when parking, waking and
// aborting race.
const (
	dirRunning uint32 = iota // a goroutine is copying or waiting on the poller
	dirParked                // no goroutine: the parker wakes it when src is readable
	dirDone                  // finished and counted in conn.live
)

// dir is one direction of a proxied connection: bytes from src to dst.
type dir struct {
	c        *conn
	src, dst *side
	index    uint8 // 0: from the client, 1: from the backend
	state    atomic.Uint32

	// Owned by the goroutine running the direction.
	n     int64         // bytes written to dst
	read  time.Duration // when src last gave bytes, after c.start
	armed bool          // src is registered with the parker's epoll
	spoke bool          // src has given bytes
}

func (d *dir) fromClient() bool { return d.index == 0 }

// run copies until the direction parks or ends.
func (d *dir) run() {
	for {
		why := d.c.pump(d)
		if why == stopPark {
			if d.park() {
				return
			}
			continue
		}
		d.ended(why)
		d.state.Store(dirDone)
		d.c.finishOne()
		return
	}
}

// park hands the direction to the parker and reports true if the calling
// goroutine should exit. Whoever wins the state change owns the direction:
// the parker (which wakes it on a new goroutine) or abort (which finishes
// it).
func (d *dir) park() bool {
	// Everything this goroutine writes must come before the state change:
	// the goroutine that wakes the direction may start at once.
	first := !d.armed
	d.armed = true
	d.state.Store(dirParked)
	if err := d.c.sh.parker.arm(d, first); err == nil {
		return true
	}
	// Not parked (the socket was closed under us): keep running, unless
	// abort has already finished the direction.
	if d.state.CompareAndSwap(dirParked, dirRunning) {
		d.armed = !first
		return false
	}
	return true
}

// wake resumes a parked direction on a new goroutine.
func (d *dir) wake() {
	if d.state.CompareAndSwap(dirParked, dirRunning) {
		go d.run()
	}
}

// ended acts on how the copy ended.
func (d *dir) ended(why stop) {
	c := d.c
	srcEnd, dstEnd := EndBackendReset, EndClientReset
	fin := EndBackendClosed
	if d.fromClient() {
		srcEnd, dstEnd = EndClientReset, EndBackendReset
		fin = EndClientClosed
	}
	switch why {
	case stopEOF:
		c.fin.CompareAndSwap(uint32(EndNone), uint32(fin))
		// Pass the FIN on and keep the other direction flowing: the peer
		// may still be answering (half-close, RFC 9293 section 3.6).
		if err := d.dst.c.CloseWrite(); err != nil {
			c.abort(dstEnd, d.src)
			return
		}
		c.half.Store(true)
		c.touch(time.Since(c.start))
		c.timer.Load().Reset(c.s.halfClosedTimeout())
	case stopSrcErr:
		c.abort(srcEnd, d.dst)
	case stopDstErr:
		c.abort(dstEnd, d.src)
	}
}

// armParkDeadline sets the source's read deadline to when the direction
// may park, if this server parks at all.
func (d *dir) armParkDeadline() {
	if d.c.sh.parker != nil {
		d.read = time.Since(d.c.start)
		d.src.c.SetReadDeadline(d.c.start.Add(d.read + d.c.s.parkDelay()))
	}
}

// moved records that the source gave bytes.
func (d *dir) moved() {
	now := time.Since(d.c.start)
	d.read = now
	d.c.touch(now)
	if !d.spoke {
		d.spoke = true
		if !d.fromClient() {
			// The backend answered: for passive checks the connection
			// worked, whatever happens to it later.
			d.c.be.ReportSuccess()
		}
	}
}

// readWaitFailed classifies an error from waiting for the source to become
// readable. The only deadline on a source is the park deadline, which is
// moved lazily: when it fires after reads, it is pushed back (again).
func (d *dir) readWaitFailed(err error) (why stop, again bool) {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return stopClosed, false
	}
	delay := d.c.s.parkDelay()
	if time.Since(d.c.start)-d.read >= delay {
		return stopPark, false
	}
	d.src.c.SetReadDeadline(d.c.start.Add(d.read + delay))
	return stopNone, true
}
