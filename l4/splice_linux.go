package l4

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// side is one socket of a proxied connection: the raw *net.TCPConn (never a
// wrapper, which would hide the fd from splice) and its syscall.RawConn,
// through which the copy loop waits on Go's poller.
type side struct {
	c   *net.TCPConn
	raw syscall.RawConn
}

func newSide(c *net.TCPConn) (side, error) {
	raw, err := c.SyscallConn()
	return side{c: c, raw: raw}, err
}

// stop says how one direction's copy ended.
type stop uint8

const (
	stopNone    stop = iota // still running
	stopEOF                 // the source sent FIN
	stopSrcErr              // reading the source failed (reset, keepalive timeout)
	stopDstErr              // writing the destination failed (reset, broken pipe)
	stopTimeout             // the connection was idle past its timeout
	stopClosed              // the connection was closed under us (abort, drain)
)

const spliceFlags = unix.SPLICE_F_MOVE | unix.SPLICE_F_NONBLOCK

// errNoPipe marks a read that found no pipe to splice into.
var errNoPipe = errors.New("l4: no pipe for splice")

// pump moves bytes from src to dst until src ends or something fails, and
// returns how many bytes reached dst.
//
// Unlike io.Copy's splice path, which holds a pipe pair for as long as the
// copy runs, pump takes a pipe only once src has data and gives it back as
// soon as src runs dry, before waiting on the poller again: an idle
// connection then holds no pipe fds and no pipe memory.
func (c *conn) pump(src, dst *side) (n int64, why stop, err error) {
	var (
		p    *pipe
		got  int
		rerr error
		werr error
	)
	read := func(fd uintptr) bool {
		if p == nil {
			if p = getPipe(); p == nil {
				rerr = errNoPipe
				return true
			}
		}
		for {
			m, e := unix.Splice(int(fd), nil, p.w, nil, pipeSize, spliceFlags)
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				// The pipe is empty here, so EAGAIN means the socket is.
				putPipe(p)
				p = nil
				return false
			}
			got, rerr = int(m), e
			return true
		}
	}
	write := func(fd uintptr) bool {
		for p.n > 0 {
			m, e := unix.Splice(p.r, nil, int(fd), nil, p.n, spliceFlags)
			switch e {
			case nil:
				p.n -= int(m)
				n += m
			case unix.EINTR:
			case unix.EAGAIN:
				return false
			default:
				werr = e
				return true
			}
		}
		return true
	}
	defer func() {
		if p != nil {
			putPipe(p)
		}
	}()
	for {
		rerr = nil
		if err := src.raw.Read(read); err != nil {
			if why, ok := c.waitFailed(err); !ok {
				return n, why, err
			}
			continue
		}
		if rerr == errNoPipe {
			m, why, err := c.copyChunk(src, dst)
			n += m
			if err != nil || why == stopEOF {
				return n, why, err
			}
			continue
		}
		if rerr != nil {
			return n, stopSrcErr, rerr
		}
		if got == 0 {
			return n, stopEOF, nil
		}
		p.n = got
		c.touch()
		for p.n > 0 {
			werr = nil
			if err := dst.raw.Write(write); err != nil {
				if why, ok := c.waitFailed(err); !ok {
					return n, why, err
				}
				continue
			}
			if werr != nil {
				return n, stopDstErr, werr
			}
		}
	}
}

// waitFailed classifies an error from waiting on the poller. It reports
// ok when the wait only hit a deadline that activity has since pushed back,
// so the caller should wait again.
func (c *conn) waitFailed(err error) (stop, bool) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if c.extend() {
			return stopNone, true
		}
		return stopTimeout, false
	}
	return stopClosed, false
}

// chunks are the buffers of the user-space fallback, used only when no pipe
// can be had (the process is out of fds): slower, but nothing is dropped.
var chunks = sync.Pool{New: func() any { return new([32 << 10]byte) }}

// copyChunk moves one read's worth of bytes from src to dst in user space.
func (c *conn) copyChunk(src, dst *side) (int64, stop, error) {
	buf := chunks.Get().(*[32 << 10]byte)
	defer chunks.Put(buf)
	var got int
	var rerr error
	for {
		err := src.raw.Read(func(fd uintptr) bool {
			for {
				got, rerr = unix.Read(int(fd), buf[:])
				if rerr != unix.EINTR {
					// Wait on the poller only after EAGAIN: its
					// wake-ups are edge-triggered.
					return rerr != unix.EAGAIN
				}
			}
		})
		if err == nil {
			break
		}
		if why, ok := c.waitFailed(err); !ok {
			return 0, why, err
		}
	}
	switch {
	case rerr != nil:
		return 0, stopSrcErr, rerr
	case got == 0:
		return 0, stopEOF, nil
	}
	c.touch()
	var sent int
	var werr error
	for sent < got {
		err := dst.raw.Write(func(fd uintptr) bool {
			for sent < got {
				m, e := unix.Write(int(fd), buf[sent:got])
				switch e {
				case nil:
					sent += m
				case unix.EINTR:
				case unix.EAGAIN:
					return false
				default:
					werr = e
					return true
				}
			}
			return true
		})
		if werr != nil {
			return int64(sent), stopDstErr, werr
		}
		if err != nil {
			if why, ok := c.waitFailed(err); !ok {
				return int64(sent), why, err
			}
		}
	}
	return int64(sent), stopNone, nil
}
