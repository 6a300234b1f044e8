package l4

// Regression tests for two bugs a review found in the data path: a slow
// reader cut off as idle, and a reset passed on as a FIN.

import (
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"sluice/internal/pool"
)

// A client that keeps reading, only slowly, is not idle: bytes move to it
// all the time. The idle timer is pushed back only when the source gives
// bytes, and the source is read only once the 1 MiB pipe has drained to the
// slow reader, so a drain longer than the idle timeout aborts a live
// transfer -- and the client, which gets the bytes already queued and then
// a FIN, cannot tell the truncated stream from a complete one.
func TestReviewBugSlowReaderIsNotIdle(t *testing.T) {
	start, open := gate(t)
	b := startBackend(t, func(c *net.TCPConn) {
		<-start
		chunk := make([]byte, 64<<10)
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	const idle = 400 * time.Millisecond
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr), IdleTimeout: idle})
	c := dial(t, p.addr, "")
	c.SetReadBuffer(16 << 10)
	// A slow client across a WAN keeps the proxy's send buffer towards it
	// small (its congestion window stays small); on loopback the kernel
	// would grow it to megabytes and hide the pipe behind it.
	eventually(t, 5*time.Second, "the proxied connection", func() bool {
		return len(liveConns(p.Server)) == 1
	})
	setClientSendBuffer(p.Server, 64<<10)
	open()

	// About 800 KB/s: the send buffer frees space every few tens of
	// milliseconds, while a full pipe takes over a second to drain.
	const want = 1536 << 10
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 8<<10)
	got := 0
	for got < want {
		n, err := c.Read(buf)
		got += n
		if err != nil {
			t.Fatalf("after %d bytes of a live transfer: %v (log %v)", got, err, p.log.conns())
		}
		time.Sleep(10 * time.Millisecond) // the slow reader under test
	}
	for _, r := range p.log.conns() {
		t.Fatalf("connection ended while its client was reading: %v", r)
	}
}

// When the backend resets, the reset must reach the client as a reset,
// never as a FIN. A socket's pending error is reported once: when the
// client-to-backend direction (writing to the backend) takes it, the
// backend-to-client direction, reading the same socket, gets 0 -- EOF -- and
// forwards a FIN to the client before the writer's abort sends the reset.
// The client reads a clean EOF (its later writes fail with EPIPE, not
// ECONNRESET). It happens in about 1 to 2% of the tries on this machine, so
// the test tries up to 600 times and stops at the first.
func TestReviewBugResetNotForwardedAsFIN(t *testing.T) {
	var mu sync.Mutex
	resets := map[int]chan struct{}{}
	b := startBackend(t, func(c *net.TCPConn) {
		// A small receive buffer fills at once, so the proxy's writer is
		// waiting on the backend when the reset comes.
		c.SetReadBuffer(4 << 10)
		var id [6]byte
		if _, err := io.ReadFull(c, id[:]); err != nil {
			return
		}
		n, _ := strconv.Atoi(string(id[:]))
		ch := make(chan struct{})
		mu.Lock()
		resets[n] = ch
		mu.Unlock()
		<-ch
		c.SetLinger(0)
		c.Close()
	})
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr)})
	for i := 100000; i < 100600; i++ {
		if fin := resetOnce(t, p.addr, i, &mu, resets); fin != "" {
			t.Fatalf("try %d: the backend reset, the client saw %s", i-100000, fin)
		}
	}
}

// resetOnce floods one connection from the client until the backend resets
// it, and returns what the client saw instead of a reset, if anything.
func resetOnce(t *testing.T, addr string, id int, mu *sync.Mutex, resets map[int]chan struct{}) string {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	werr := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		copy(buf, strconv.Itoa(id))
		for {
			if _, err := c.Write(buf); err != nil {
				werr <- err
				return
			}
		}
	}()
	var reset chan struct{}
	eventually(t, 5*time.Second, "the backend connection", func() bool {
		mu.Lock()
		defer mu.Unlock()
		reset = resets[id]
		return reset != nil
	})
	time.Sleep(5 * time.Millisecond) // let the writer block on the backend
	close(reset)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, rerr := io.Copy(io.Discard, c)
	we := <-werr
	// Whichever of the client's reader and writer takes the reset gets
	// ECONNRESET; after a FIN the writer gets EPIPE and the reader EOF.
	if errors.Is(rerr, syscall.ECONNRESET) || errors.Is(we, syscall.ECONNRESET) {
		return ""
	}
	return "read: " + errString(rerr) + ", write: " + errString(we)
}

func errString(err error) string {
	if err == nil {
		return "EOF"
	}
	return err.Error()
}
