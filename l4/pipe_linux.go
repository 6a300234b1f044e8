package l4

import (
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// pipeSize is the capacity asked of each pipe. A bigger pipe moves more per
// splice call under load; the kernel fills its pages only as data arrives, so
// an empty pipe in the pool costs little.
const pipeSize = 1 << 20

// pipe is a kernel pipe used as the buffer that splice(2) moves bytes through
// between two sockets. n counts the bytes sitting in it.
type pipe struct {
	r, w int
	n    int
}

// pipes holds empty pipes between uses. sync.Pool keeps per-P caches, so
// taking and returning a pipe takes no lock shared by all connections; pipes
// it drops are closed by their cleanup.
var pipes = sync.Pool{New: func() any {
	p, err := newPipe()
	if err != nil {
		// Out of fds (EMFILE) or pipe memory: the caller falls back to a
		// user-space copy rather than failing the connection.
		return (*pipe)(nil)
	}
	return p
}}

func newPipe() (*pipe, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, err
	}
	// Best effort: the default 64 KiB still works, only with more calls.
	unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, pipeSize)
	p := &pipe{r: fds[0], w: fds[1]}
	runtime.AddCleanup(p, closePipe, fds)
	return p, nil
}

func closePipe(fds [2]int) {
	unix.Close(fds[0])
	unix.Close(fds[1])
}

// getPipe returns an empty pipe, or nil if none can be made.
func getPipe() *pipe {
	return pipes.Get().(*pipe)
}

// putPipe returns p to the pool if it is empty. A pipe still holding bytes
// (its transfer failed half way) is left to its cleanup instead, since the
// next user would send those bytes to the wrong socket.
func putPipe(p *pipe) {
	if p.n == 0 {
		pipes.Put(p)
	}
}
