package l4

import (
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"sluice/internal/pool"
)

// Data and FIN arriving in one segment must both be passed on: a proxy
// that takes a short read as proof of an empty socket (and waits for the
// next readiness) never sees the FIN behind the data, which raises no new
// wake-up, and strands the connection until its idle timeout.
func TestDataWithFINIsNotStranded(t *testing.T) {
	b := startBackend(t, func(c *net.TCPConn) {
		raw, err := c.SyscallConn()
		if err != nil {
			return
		}
		// Cork, so the answer and the FIN leave in one segment.
		raw.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK, 1) })
		c.Write([]byte("answer"))
		c.CloseWrite()
		raw.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK, 0) })
		io.Copy(io.Discard, c)
	})
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr), IdleTimeout: time.Hour})
	for i := range 100 {
		c := dial(t, p.addr, "")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "answer" {
			t.Fatalf("connection %d: read %q, %v; want the answer, then EOF", i, got, err)
		}
		c.Close()
	}
}

// tcpPair returns the two ends of a loopback TCP connection, the second as
// a non-blocking raw fd that the test owns.
func tcpPair(t *testing.T) (*net.TCPConn, int) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	f, err := b.File()
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	unix.SetNonblock(fd, true)
	t.Cleanup(func() { unix.Close(fd) })
	return a, fd
}

// waitRdhup waits until epoll reports that fd's peer has sent FIN.
func waitRdhup(t *testing.T, fd int) {
	t.Helper()
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ep)
	ev := unix.EpollEvent{Events: unix.EPOLLRDHUP}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		t.Fatal(err)
	}
	evs := make([]unix.EpollEvent, 1)
	if n, err := unix.EpollWait(ep, evs, 5000); err != nil || n != 1 {
		t.Fatalf("waiting for the FIN: %d events, %v", n, err)
	}
}

// A read that finds fewer bytes than it asked for, on a socket whose FIN
// had arrived before it (EPOLLRDHUP), took everything before the FIN: the
// connection must take the end at once instead of reading again for the
// 0 that would follow (one system call per such connection).
func TestShortReadAfterFINTakesTheEnd(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ready    uint8
		eof      bool // the end taken
		readMore bool // another read due
	}{
		{"FIN seen before the read", canRead | canWrite | sawRdhup, true, false},
		{"no FIN seen: the socket is empty, not ended", canRead | canWrite, false, false},
		{"urgent data: the read may have stopped at its mark", canRead | canWrite | sawRdhup | sawUrg, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, cfd := tcpPair(t)
			backend, bfd := tcpPair(t)
			client.Write([]byte("goodbye"))
			client.CloseWrite()
			waitRdhup(t, cfd)

			l := &loop{s: &Server{}, buf: make([]byte, bufSize)}
			c := &conn{fd: [2]int{cfd, bfd}, phase: phaseProxying, list: listNone}
			c.ready = [2]uint8{tc.ready, canWrite}
			l.setList(c, listOpen)
			if st := l.read(c, sideClient); st != stepOn {
				t.Fatalf("read: step %d, want %d", st, stepOn)
			}
			if got := c.dirs[sideClient].eof; got != tc.eof {
				t.Errorf("after one read of data and FIN: eof %v, want %v", got, tc.eof)
			}
			if got := c.ready[sideClient]&canRead != 0; got != tc.readMore {
				t.Errorf("after one read: another read due %v, want %v", got, tc.readMore)
			}
			backend.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 16)
			if n, err := backend.Read(buf); err != nil || string(buf[:n]) != "goodbye" {
				t.Errorf("the backend read %q, %v; want the client's bytes", buf[:n], err)
			}
		})
	}
}

// Urgent data (MSG_OOB) makes a read stop at its mark: the bytes after it,
// and the FIN behind them, must still reach the backend, though the read
// before the mark came up short after the FIN had arrived.
func TestBytesAfterUrgentMarkReachBackend(t *testing.T) {
	got := make(chan string, 1)
	b := startBackend(t, func(c *net.TCPConn) {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		all, err := io.ReadAll(c)
		if err != nil {
			all = append(all, " error: "+err.Error()...)
		}
		got <- string(all)
	})
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr), IdleTimeout: time.Hour})
	// The loops wait until the client has sent everything, so that the
	// proxy's first read finds the FIN already in.
	release := holdLoops(p.Server)
	c := dial(t, p.addr, "")
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	raw.Control(func(fd uintptr) {
		unix.Write(int(fd), []byte("before"))
		unix.Sendto(int(fd), []byte("!"), unix.MSG_OOB, nil)
		unix.Write(int(fd), []byte("after"))
	})
	c.CloseWrite()
	release()
	select {
	case s := <-got:
		// The urgent byte is out of band: a stream proxy passes the
		// bytes around it, as nginx and HAProxy do.
		if s != "beforeafter" {
			t.Errorf("backend read %q, want %q", s, "beforeafter")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the backend saw no end of the stream")
	}
}

// holdLoops keeps every loop of s busy until the returned function is
// called: the kernel queues connections and bytes meanwhile.
func holdLoops(s *Server) (release func()) {
	ch := make(chan struct{})
	var held sync.WaitGroup
	s.mu.Lock()
	for _, l := range s.loops {
		held.Add(1)
		if !l.post(func(*loop) { held.Done(); <-ch }) {
			held.Done()
		}
	}
	s.mu.Unlock()
	held.Wait()
	return func() { close(ch) }
}
