package l4

import (
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"sluice/internal/pool"
)

// TestBothSidesNoDelay checks that both sockets of a proxied connection
// have TCP_NODELAY: the backend's is set per connection, the client's is
// inherited from the listening socket, set once.
func TestBothSidesNoDelay(t *testing.T) {
	b := startBackend(t, greeter("b"))
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr)})
	readLine(t, dial(t, p.addr, ""))
	var mu sync.Mutex
	var got [][2]int
	p.onLoops(func(l *loop) {
		for _, c := range l.conns {
			if c.fd[sideClient] < 0 || c.phase != phaseProxying {
				continue
			}
			var v [2]int
			for i, fd := range c.fd {
				v[i], _ = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY)
			}
			mu.Lock()
			got = append(got, v)
			mu.Unlock()
		}
	})
	if len(got) != 1 || got[0] != [2]int{1, 1} {
		t.Fatalf("TCP_NODELAY (client, backend) of the proxied connections: %v, want [[1 1]]", got)
	}
}
