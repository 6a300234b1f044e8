package l4

import (
	"context"
	"errors"
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
