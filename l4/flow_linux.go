package l4

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// How a step of a direction went.
type step uint8

const (
	stepOn    step = iota // go on
	stepWait              // wait for the next event
	stepEnded             // the connection ended; it is no longer ours
)

// maxRounds bounds the reads of one direction per turn, so that a busy
// connection does not starve the others; what is left waits in loop.again.
const maxRounds = 16

// bulkBurst is the bytes a direction must move between two empty reads to
// stay on splice. Below it, the next burst starts with recv again: small
// messages cost one copy each way, less than two splices and a pipe.
const bulkBurst = 256 << 10

// dir is one direction of a connection: bytes from side i to the other.
//
// Small messages are read into the loop's buffer and sent on at once; only
// what the destination does not take is kept, in buf, and then the source
// is not read until the destination has taken it (backpressure). Once a
// read fills the loop's buffer, the direction moves bytes with splice(2)
// through a pipe taken from the loop, and gives the pipe back when the
// source runs dry: an idle connection holds no pipe.
type dir struct {
	n      int64  // bytes written to the destination
	buf    []byte // bytes read but not yet written, a slab from the loop
	off    int    // how much of buf is written
	p      *pipe  // held while splicing
	splice bool   // read with splice, not recv
	burst  int    // bytes read since the source was last found empty
	eof    bool   // the source ended; the destination gets FIN once buf and p are empty
	done   bool   // FIN passed on
}

func (d *dir) pending() bool { return d.buf != nil || d.p != nil && d.p.n > 0 }

// proxy moves what it can both ways, and ends the connection when both
// directions have.
func (l *loop) proxy(c *conn) {
	for i := range c.dirs {
		if l.pump(c, i) == stepEnded {
			return
		}
	}
}

// pump moves bytes of direction i until its source is empty, its
// destination full, or its turn over.
func (l *loop) pump(c *conn, i int) step {
	d := &c.dirs[i]
	for round := 0; ; round++ {
		if d.pending() {
			if st := l.flush(c, i); st != stepOn {
				return st
			}
		}
		if d.eof {
			if d.done {
				return stepWait
			}
			return l.passFIN(c, i)
		}
		if c.ready[i]&canRead == 0 {
			return stepWait
		}
		if round == maxRounds {
			l.requeue(c)
			return stepWait
		}
		if st := l.read(c, i); st != stepOn {
			return st
		}
	}
}

// read reads once from direction i's source, and sends what it read on.
func (l *loop) read(c *conn, i int) step {
	d := &c.dirs[i]
	if d.splice && d.p == nil {
		if d.p = l.getPipe(); d.p == nil {
			d.splice = false // out of fds: copy through user space
		}
	}
	fd := c.fd[i]
	var n int
	var e unix.Errno
	if d.splice {
		n, e = spliceRaw(fd, d.p.w, pipeSize)
	} else {
		n, e = recvRaw(fd, l.buf, 0)
	}
	switch {
	case e == unix.EAGAIN:
		c.ready[i] &^= canRead
		if d.p != nil {
			// Empty: flushed before this read.
			l.putPipe(d.p)
			d.p = nil
			d.splice = d.burst >= bulkBurst
		}
		d.burst = 0
		return stepWait
	case e == unix.EINTR:
		return stepOn
	case e != 0:
		return l.srcFailed(c, i, e)
	case n == 0:
		return l.srcEOF(c, i)
	}
	d.burst += n
	l.touch(c)
	if i == sideBackend && !c.spoke {
		// The backend answered: for passive checks the connection
		// worked, whatever happens to it later.
		c.spoke = true
		c.be.ReportSuccess()
	}
	if d.splice {
		// A short splice does not mean the socket is empty (the pipe
		// may have filled): read until EAGAIN.
		d.p.n = n
		return stepOn
	}
	// The first read of a direction is always a recv (splice follows a
	// full one), so the bytes a client without a preamble opens with are
	// here to check.
	if c.check && i == sideClient {
		c.check = false
		if _, err := l.s.Preamble.ParsePreamble(l.buf[:n], &c.client); err != nil && !errors.Is(err, ErrNeedMore) {
			l.finish(c, EndBadPreamble, sideClient, fmt.Errorf("the client's first bytes: %w", err))
			return stepEnded
		}
	}
	fin := false
	switch {
	case n == len(l.buf):
		d.splice = true
	case c.ready[i]&sawUrg != 0:
		// Stopped at an urgent mark, maybe: read on until EAGAIN.
	case c.ready[i]&sawRdhup == 0:
		// A short read emptied the socket (nginx's rule): the next
		// bytes raise a new event.
		c.ready[i] &^= canRead
	default:
		// FIN had arrived before this read (EPOLLRDHUP), so every
		// byte before it was queued, and a short read took them all:
		// the next read would return 0. Take the end now and save
		// that call (a connection that sends its last bytes and
		// closes, as a client's Terminate or a server's goodbye
		// does). srcEOF still tells a reset from a FIN.
		fin = true
	}
	st := l.send(c, i, l.buf[:n])
	if st == stepOn && fin {
		return l.srcEOF(c, i)
	}
	return st
}

// send writes b, just read into the loop's buffer, to direction i's
// destination, keeping what it does not take.
func (l *loop) send(c *conn, i int, b []byte) step {
	d := &c.dirs[i]
	o := 1 - i
	m, e := 0, unix.Errno(0)
	if c.ready[o]&canWrite != 0 {
		m, e = sendRaw(c.fd[o], b)
		switch {
		case e == unix.EAGAIN || e == unix.EINTR:
			m = 0
		case e != 0:
			return l.dstFailed(c, i, e)
		}
	}
	d.n += int64(m)
	if m < len(b) {
		c.ready[o] &^= canWrite
		d.buf = append(l.getSlab()[:0], b[m:]...)
		d.off = 0
		return stepWait
	}
	return stepOn
}

// flush writes what direction i holds to its destination.
func (l *loop) flush(c *conn, i int) step {
	d := &c.dirs[i]
	o := 1 - i
	fd := c.fd[o]
	if c.ready[o]&canWrite == 0 {
		return stepWait
	}
	for d.buf != nil {
		m, e := sendRaw(fd, d.buf[d.off:])
		switch {
		case e == unix.EINTR:
			continue
		case e == unix.EAGAIN:
			c.ready[o] &^= canWrite
			return stepWait
		case e != 0:
			return l.dstFailed(c, i, e)
		}
		// A slow reader taking bytes is not idle, though its source
		// is not read meanwhile.
		l.touch(c)
		d.n += int64(m)
		d.off += m
		if d.off == len(d.buf) {
			l.putSlab(d.buf)
			d.buf, d.off = nil, 0
		}
	}
	for d.p != nil && d.p.n > 0 {
		m, e := spliceRaw(d.p.r, fd, d.p.n)
		switch {
		case e == unix.EINTR:
			continue
		case e == unix.EAGAIN:
			c.ready[o] &^= canWrite
			return stepWait
		case e != 0:
			return l.dstFailed(c, i, e)
		}
		l.touch(c)
		d.n += int64(m)
		d.p.n -= m
	}
	return stepOn
}

// srcEOF handles a read of 0 bytes: the source sent FIN, or reset.
func (l *loop) srcEOF(c *conn, i int) step {
	// A socket reports a pending error once: when a write took the
	// ECONNRESET, a read sees a plain 0 and would pass the reset on as a
	// FIN. Here a failed write ends the connection at once, but a reset
	// may also be reported as end of file once the socket has been shut
	// down by it. A FIN leaves the socket in CLOSE_WAIT, a reset in CLOSE;
	// once either side has sent FIN, CLOSE is also a normal ending. So a
	// connection with no FIN yet whose socket epoll reported an error or
	// hang-up (a plain FIN raises neither) is checked: one getsockopt, on
	// resets only.
	if c.fin == EndNone && c.ready[i]&sawErr != 0 && tcpClosed(c.fd[i]) {
		return l.srcFailed(c, i, unix.ECONNRESET)
	}
	if c.fin == EndNone {
		c.fin = EndClientClosed
		if i == sideBackend {
			c.fin = EndBackendClosed
		}
	}
	c.ready[i] &^= canRead
	d := &c.dirs[i]
	d.eof = true
	if d.p != nil && d.p.n == 0 {
		l.putPipe(d.p)
		d.p = nil
	}
	return stepOn
}

// passFIN passes the source's FIN on, once everything before it has been
// written, and keeps the other direction flowing: the peer may still be
// answering (half-close, RFC 9293 section 3.6). The connection ends when
// both directions have.
func (l *loop) passFIN(c *conn, i int) step {
	if c.dirs[1-i].done {
		// The last direction: closing sends the FIN, as both
		// sockets have been read to their end (a close with unread
		// bytes would send a reset instead).
		l.finish(c, c.fin, -1, nil)
		return stepEnded
	}
	if e := shutdownWrite(c.fd[1-i]); e != 0 {
		return l.dstFailed(c, i, e)
	}
	d := &c.dirs[i]
	d.done = true
	if d.p != nil {
		l.putPipe(d.p)
		d.p = nil
	}
	l.setList(c, listHalf)
	return stepWait
}

var sideNames = [2]string{"client", "backend"}

// srcFailed ends the connection after reading direction i's source failed
// (a reset), resetting the destination in turn.
func (l *loop) srcFailed(c *conn, i int, e unix.Errno) step {
	end := EndClientReset
	if i == sideBackend {
		end = EndBackendReset
	}
	l.finish(c, end, 1-i, fmt.Errorf("reading from the %s: %w", sideNames[i], e))
	return stepEnded
}

// dstFailed ends the connection after writing to direction i's destination
// failed, resetting the source in turn.
func (l *loop) dstFailed(c *conn, i int, e unix.Errno) step {
	end := EndBackendReset
	if i == sideBackend {
		end = EndClientReset
	}
	l.finish(c, end, i, fmt.Errorf("writing to the %s: %w", sideNames[1-i], e))
	return stepEnded
}
