package l4

import (
	"io"
	"net"
	"syscall"
	"testing"
	"time"

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
