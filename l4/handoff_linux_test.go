package l4

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"sluice/internal/pool"
)

// Import into a Server one of whose loops has closed (a drain emptied it)
// refuses that loop's connections while another loop adopts its own: the
// two report their outcome at the same time, and the race detector sees
// whether they share Import's error list safely.
func TestImportWithOneLoopClosed(t *testing.T) {
	be := startBackend(t, greeter("a"))
	p := newPool(t, pool.RoundRobin, 0, be.addr)
	a := startProxy(t, &Server{Name: "a", Pool: p})
	b := startProxy(t, &Server{Name: "b", Pool: p})
	held := dial(t, a.addr, "")
	if got := readLine(t, held); got != "a" {
		t.Fatalf("greeting %q", got)
	}
	busy := -1
	a.onLoops(func(l *loop) {
		if l.live > 0 {
			busy = l.index
		}
	})
	if busy < 0 {
		t.Fatal("no loop holds the connection")
	}
	// The connection to move, from the other Server.
	moved := dial(t, b.addr, "")
	if got := readLine(t, moved); got != "a" {
		t.Fatalf("greeting %q", got)
	}
	hs := b.Export()
	if len(hs) != 1 {
		t.Fatalf("exported %d, want 1", len(hs))
	}
	shut := make(chan error, 1)
	go func() { shut <- a.Shutdown(context.Background()) }()
	t.Cleanup(func() { a.Close(); <-shut })
	idle := a.loops[1-busy]
	eventually(t, 5*time.Second, "the idle loop to close", func() bool {
		idle.mu.Lock()
		defer idle.mu.Unlock()
		return idle.closed
	})
	// One for each loop: the idle one's cannot be adopted.
	refusedH := hs[0]
	refusedH.Socket = 1 - busy
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	refusedH.ClientFD, refusedH.BackendFD = fds[0], fds[1]
	refusedH.Dirs = [2]HandoffDir{}
	hs[0].Socket = busy
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := a.Import(ctx, []Handoff{hs[0], refusedH}, backendOf(p))
	if n != 1 || !errors.Is(err, ErrNotServing) {
		t.Fatalf("Import: %d adopted, %v; want 1 and ErrNotServing", n, err)
	}
	moved.Write([]byte("still\n"))
	if got := readLine(t, moved); got != "still" {
		t.Fatalf("echo after the move %q", got)
	}
}

// A batch posted to a loop just as it closes runs on the closed loop
// (close runs what was posted, so that no poster waits forever): the
// connections are refused and their sockets closed, not added to an epoll
// set about to be closed, where nothing would ever close them.
func TestAdoptOnClosedLoopClosesSockets(t *testing.T) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Name: "a"}
	s.init()
	l, err := newLoop(s, ln)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	var h Handoff
	var peers [2]int
	for i, fd := range []*int{&h.ClientFD, &h.BackendFD} {
		p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		*fd, peers[i] = p[0], p[1]
		t.Cleanup(func() { unix.Close(p[1]) })
	}
	var n int
	var aerr error
	if !l.post(func(l *loop) { n, aerr = l.adoptAll([]Handoff{h}, nil) }) {
		t.Fatal("post refused on an open loop")
	}
	l.close() // as run does when it returns, on this goroutine instead
	if n != 0 || !errors.Is(aerr, ErrNotServing) {
		t.Errorf("adopted %d on a closed loop, %v; want 0 and ErrNotServing", n, aerr)
	}
	for _, fd := range peers {
		if _, err := unix.Read(fd, make([]byte, 1)); err == unix.EAGAIN {
			t.Errorf("the handed-off socket is still open after its loop closed")
		}
	}
}
