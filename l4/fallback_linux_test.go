package l4

import (
	"bytes"
	"crypto/rand"
	"io"
	"syscall"
	"testing"
	"time"

	"sluice/internal/pool"
)

// TestCopyWithoutPipes runs a transfer while no pipe can be made, as when
// the process is out of fds: bytes must still arrive, through user space.
func TestCopyWithoutPipes(t *testing.T) {
	b := startBackend(t, greeter("b"))
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr),
		newPipe: func() (*pipe, error) { return nil, syscall.EMFILE }})
	c := dial(t, p.addr, "")
	readLine(t, c)
	payload := make([]byte, 1<<20)
	rand.Read(payload)
	go func() {
		c.Write(payload)
		c.CloseWrite()
	}()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("echo without pipes: %d bytes, %v; want %d bytes", len(got), err, len(payload))
	}
	p.log.waitEnd(t, EndClientClosed)
}
