package l4

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// parker wakes parked directions. It owns an epoll instance in which a
// direction registers its source socket, one-shot, before its goroutine
// exits; one goroutine per parker waits for events and starts a goroutine
// for each direction whose source became readable.
//
// The epoll fd is itself pollable, so the parker's goroutine waits on Go's
// poller like any socket read rather than blocking a thread in epoll_wait.
type parker struct {
	f    *os.File
	raw  syscall.RawConn
	epfd int
}

func newParker() (*parker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	// Non-blocking, so that os.NewFile registers it with the poller.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, err
	}
	f := os.NewFile(uintptr(epfd), "parker")
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &parker{f: f, raw: raw, epfd: epfd}, nil
}

// arm registers d's source for one readiness event. Level-triggered and
// one-shot: data that arrived before arming still wakes it, and the event
// fires once until re-armed.
// first says whether this is the socket's first registration (ADD) or a
// re-arm (MOD).
func (p *parker) arm(d *dir, first bool) error {
	if p == nil {
		return errors.New("l4: no parker")
	}
	key := d.c.id<<1 | uint64(d.index)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT}
	ev.Fd, ev.Pad = int32(uint32(key)), int32(uint32(key>>32))
	op := unix.EPOLL_CTL_MOD
	if first {
		op = unix.EPOLL_CTL_ADD
	}
	var cerr error
	if err := d.src.raw.Control(func(fd uintptr) {
		cerr = unix.EpollCtl(p.epfd, op, int(fd), &ev)
	}); err != nil {
		return err
	}
	return cerr
}

// loop delivers events to wake until the parker is closed.
func (p *parker) loop(wake func(key uint64)) {
	var evs [128]unix.EpollEvent
	var werr error
	for werr == nil {
		err := p.raw.Read(func(uintptr) bool {
			for {
				n, err := unix.EpollWait(p.epfd, evs[:], 0)
				if err == unix.EINTR {
					continue
				}
				if err != nil {
					werr = err
					return true
				}
				for _, ev := range evs[:n] {
					wake(uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32)
				}
				// Fewer than a full batch means the ready list was
				// empty: only then is waiting on the poller safe, as
				// its wake-ups are edge-triggered.
				if n < len(evs) {
					return false
				}
			}
		})
		if err != nil {
			return
		}
	}
}

func (p *parker) close() error {
	return p.f.Close()
}
