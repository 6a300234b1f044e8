package epollpark

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestWait: an empty set polls nothing, times out at its deadline, and
// wakes with the event once a watched fd becomes readable; Close closes
// the epoll fd.
func TestWait(t *testing.T) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, efd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: 7}); err != nil {
		t.Fatal(err)
	}
	var s Set
	if s.Opened() {
		t.Fatal("zero Set says it is open")
	}
	if err := s.Open(ep, make([]unix.EpollEvent, 4)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Poll(); n != 0 || err != nil {
		t.Fatalf("Poll on an idle set: %d, %v", n, err)
	}
	start := time.Now()
	if n, err := s.Wait(start.Add(50 * time.Millisecond)); n != 0 || err != nil {
		t.Fatalf("Wait with nothing ready: %d, %v", n, err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("Wait returned after %v, before its deadline", d)
	}
	go unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	n, err := s.Wait(time.Time{})
	if n != 1 || err != nil || s.events[0].Fd != 7 {
		t.Fatalf("Wait after a write: %d, %v, key %d", n, err, s.events[0].Fd)
	}
	if !s.Armed().IsZero() {
		t.Fatalf("deadline %v still armed after Wait(zero)", s.Armed())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.FcntlInt(uintptr(ep), unix.F_GETFD, 0); err == nil {
		t.Fatal("epoll fd still open after Close")
	}
}
