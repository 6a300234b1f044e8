package l4

import (
	"errors"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

const spliceFlags = unix.SPLICE_F_MOVE | unix.SPLICE_F_NONBLOCK

// errNoPipe marks a read that found no pipe to splice into.
var errNoPipe = errors.New("l4: no pipe for splice")

// pump moves bytes from d.src to d.dst until the source ends, something
// fails, or the source has been idle for the park delay.
//
// Unlike io.Copy's splice path, which holds a pipe pair for as long as the
// copy runs, pump takes a pipe only once the source has data and gives it
// back as soon as the source runs dry, before waiting on the poller again:
// an idle connection holds no pipe fds and no pipe memory.
func (c *conn) pump(d *dir) stop {
	var (
		p      *pipe
		got    int
		rerr   error
		werr   error
		waited bool // the last write found dst full
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
			if m == 0 && e == nil && reset(c, fd) {
				rerr = unix.ECONNRESET
			}
			return true
		}
	}
	write := func(fd uintptr) bool {
		for p.n > 0 {
			m, e := unix.Splice(p.r, nil, int(fd), nil, p.n, spliceFlags)
			switch e {
			case nil:
				p.n -= int(m)
				d.n += m
				if waited {
					// A slow reader taking bytes is not idle, though
					// the source is not read until the pipe drains.
					waited = false
					c.touch(time.Since(c.start))
				}
			case unix.EINTR:
			case unix.EAGAIN:
				waited = true
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
	d.armParkDeadline()
	for {
		rerr = nil
		if err := d.src.raw.Read(read); err != nil {
			if why, again := d.readWaitFailed(err); !again {
				return why
			}
			continue
		}
		if rerr == errNoPipe {
			if why := c.copyChunk(d); why != stopNone {
				return why
			}
			continue
		}
		if rerr != nil {
			return stopSrcErr
		}
		if got == 0 {
			return stopEOF
		}
		p.n = got
		d.moved()
		for p.n > 0 {
			werr = nil
			if err := d.dst.raw.Write(write); err != nil {
				return stopClosed
			}
			if werr != nil {
				return stopDstErr
			}
		}
	}
}

// reset reports whether a socket that read as end-of-file was in fact
// reset. A socket reports a pending error once: when the other direction's
// write took the ECONNRESET, this direction's read sees a plain 0, and would
// pass the reset on as a FIN. A FIN leaves the socket in CLOSE_WAIT, a reset
// in CLOSE. Once either side has sent FIN, CLOSE is also a normal ending,
// so only a connection with no FIN yet is checked: one getsockopt per
// connection at most, on its first end-of-file.
func reset(c *conn, fd uintptr) bool {
	if c.fin.Load() != uint32(EndNone) {
		return false
	}
	info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	return err == nil && info.State == unix.BPF_TCP_CLOSE
}

// chunks are the buffers of the user-space fallback, used only when no pipe
// can be had (the process is out of fds): slower, but nothing is dropped.
var chunks = sync.Pool{New: func() any { return new([32 << 10]byte) }}

// copyChunk moves one read's worth of bytes in user space.
func (c *conn) copyChunk(d *dir) stop {
	buf := chunks.Get().(*[32 << 10]byte)
	defer chunks.Put(buf)
	var got int
	var rerr error
	for {
		err := d.src.raw.Read(func(fd uintptr) bool {
			for {
				got, rerr = unix.Read(int(fd), buf[:])
				if got == 0 && rerr == nil && reset(c, fd) {
					rerr = unix.ECONNRESET
				}
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
		if why, again := d.readWaitFailed(err); !again {
			return why
		}
	}
	switch {
	case rerr != nil:
		return stopSrcErr
	case got == 0:
		return stopEOF
	}
	d.moved()
	var sent int
	var werr error
	waited := false
	for sent < got {
		err := d.dst.raw.Write(func(fd uintptr) bool {
			for sent < got {
				m, e := unix.Write(int(fd), buf[sent:got])
				switch e {
				case nil:
					sent += m
					d.n += int64(m)
					if waited {
						waited = false
						c.touch(time.Since(c.start))
					}
				case unix.EINTR:
				case unix.EAGAIN:
					waited = true
					return false
				default:
					werr = e
					return true
				}
			}
			return true
		})
		if werr != nil {
			return stopDstErr
		}
		if err != nil {
			return stopClosed
		}
	}
	return stopNone
}
