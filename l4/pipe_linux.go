package l4

import (
	"golang.org/x/sys/unix"
)

// pipeSize is the capacity asked of each pipe. A bigger pipe moves more per
// splice call under load; the kernel fills its pages only as data arrives, so
// an empty pipe in the pool costs little.
const pipeSize = 1 << 20

// maxIdlePipes is how many empty pipes a loop keeps for its next bulk
// transfers; more are closed when given back.
const maxIdlePipes = 4

// pipe is a kernel pipe used as the buffer that splice(2) moves bytes through
// between two sockets. n counts the bytes sitting in it.
type pipe struct {
	r, w int
	n    int
}

func newPipe() (*pipe, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, err
	}
	// Best effort: the default 64 KiB still works, only with more calls.
	unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, pipeSize)
	return &pipe{r: fds[0], w: fds[1]}, nil
}

func (p *pipe) close() {
	closeRaw(p.r)
	closeRaw(p.w)
}

// getPipe returns an empty pipe, or nil if none can be made (out of fds or
// pipe memory): the caller then copies through user space rather than
// failing the connection.
func (l *loop) getPipe() *pipe {
	if n := len(l.pipes); n > 0 {
		p := l.pipes[n-1]
		l.pipes = l.pipes[:n-1]
		return p
	}
	mk := newPipe
	if l.s.newPipe != nil {
		mk = l.s.newPipe
	}
	p, err := mk()
	if err != nil {
		return nil
	}
	return p
}

// putPipe keeps p for reuse if it is empty and the loop has room. A pipe
// still holding bytes (its transfer failed half way) is closed, since the
// next user would send those bytes to the wrong socket.
func (l *loop) putPipe(p *pipe) {
	if p.n == 0 && len(l.pipes) < maxIdlePipes {
		l.pipes = append(l.pipes, p)
		return
	}
	p.close()
}
