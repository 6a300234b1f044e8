package l4

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"sluice/internal/pool"
)

// countPipes counts the pipe fds this process holds.
func countPipes(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "pipe:") {
			n++
		}
	}
	return n
}

func TestIdleConnectionsHoldNoPipes(t *testing.T) {
	b := startBackend(t, greeter("b"))
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr)})
	const n = 200
	fdsBefore, pipesBefore := openFDs(t), countPipes(t)
	for range n {
		c := dial(t, p.addr, "")
		readLine(t, c)
		// Move bytes both ways so each connection has used a pipe.
		c.Write([]byte("x\n"))
		if got := readLine(t, c); got != "x" {
			t.Fatalf("echo %q", got)
		}
	}
	// Each idle proxied connection is four fds in this process: the
	// client's socket, the backend's, and sluice's two. io.Copy's splice
	// would add two pipes (four fds) per connection while it waits.
	// Pipes the pool let go are closed by cleanups that run after a GC
	// (the race detector makes sync.Pool drop items on purpose). A few may
	// stay pooled, about one per P in steady state.
	pipes := 0
	eventually(t, 5*time.Second, "pipe fds to be released", func() bool {
		runtime.GC()
		pipes = countPipes(t) - pipesBefore
		return pipes <= 16
	})
	fds := openFDs(t) - fdsBefore
	t.Logf("%d idle connections: %d more fds, %d more pipe fds", n, fds, pipes)
	if fds > 4*n+16 {
		t.Fatalf("%d fds for %d idle connections, want at most %d", fds, n, 4*n+16)
	}
}

func TestIdleConnectionsParkWithoutGoroutines(t *testing.T) {
	b := startBackend(t, greeter("b"))
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr)})
	const n = 200
	base := runtime.NumGoroutine()
	conns := make([]*net.TCPConn, n)
	for i := range conns {
		conns[i] = dial(t, p.addr, "")
		readLine(t, conns[i])
	}
	// The test's backend keeps one goroutine per connection; sluice's two
	// per connection must go once the connections are idle.
	eventually(t, 10*time.Second, "idle connections to park", func() bool {
		return runtime.NumGoroutine()-base <= n+8
	})
	// Parked connections wake up and carry bytes both ways.
	for i, c := range conns {
		fmt.Fprintf(c, "ping %d\n", i)
	}
	for i, c := range conns {
		if got, want := readLine(t, c), fmt.Sprintf("ping %d", i); got != want {
			t.Fatalf("echo %q, want %q", got, want)
		}
	}
}
