package l4

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"sluice/internal/pool"
)

// These tests drive the data path at the moments where it is easiest to
// get wrong: traffic paused and resumed on idle connections, resets and
// half-closes that arrive while both directions wait for events, slow
// readers, fd numbers reused by new connections, and shutdown with idle and
// busy connections at once.

// connView is what a test sees of a live connection (see liveConns).
type connView struct {
	client netip.AddrPort
	dirs   [2]uint32 // dirWaiting, dirBusy or dirDone
}

// Direction states as tests see them.
const (
	dirWaiting uint32 = iota // nothing held, waiting for its source's next event
	dirBusy                  // bytes held or its source still readable
	dirDone                  // FIN passed on
)

// idlePause is a pause between exchanges long enough for the loop to have
// gone back to waiting for events on the connection.
const idlePause = 20 * time.Millisecond

// dirStates reports whether s proxies exactly n connections and every
// direction of each is in one of the given states.
func dirStates(s *Server, n int, want ...uint32) bool {
	cs := liveConns(s)
	if len(cs) != n {
		return false
	}
	for _, c := range cs {
		for i := range c.dirs {
			if !slices.Contains(want, c.dirs[i]) {
				return false
			}
		}
	}
	return true
}

// waitParked waits until s has n connections with both directions waiting
// for events, holding nothing.
func waitParked(t *testing.T, s *Server, n int) {
	t.Helper()
	eventually(t, 5*time.Second, fmt.Sprintf("%d connections to wait idle both ways", n), func() bool {
		return dirStates(s, n, dirWaiting)
	})
}

// waitDir waits until the only connection's direction i is in state st.
func waitDir(t *testing.T, s *Server, i int, st uint32) {
	t.Helper()
	eventually(t, 5*time.Second, fmt.Sprintf("direction %d in state %d", i, st), func() bool {
		cs := liveConns(s)
		return len(cs) == 1 && cs[0].dirs[i] == st
	})
}

// gate is a channel a backend waits on; the test opens it, or its cleanup
// does, so that a failed test never leaves a backend goroutine blocked.
func gate(t *testing.T) (ch chan struct{}, open func()) {
	ch = make(chan struct{})
	var once sync.Once
	open = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(open)
	return ch, open
}

// echoer copies what it reads back in user space, then passes the FIN on.
func echoer(c *net.TCPConn) {
	io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{c})
	c.CloseWrite()
}

// pattern returns n bytes that differ by connection and round, so that
// bytes delivered to the wrong connection or out of order are caught.
func pattern(conn, round, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(conn*131 + round*31 + i*7 + i>>8)
	}
	return b
}

func TestReviewStressParkAndWake(t *testing.T) {
	b := startBackend(t, echoer)
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr)})
	park := idlePause
	// Pauses of several lengths, so that requests land on connections
	// still busy and on ones long idle.
	pauses := []time.Duration{0, park / 4, park - 2*time.Millisecond, park,
		park + 2*time.Millisecond, 2 * park}
	sizes := []int{1, 700, 64 << 10, 300 << 10}
	const conns, rounds = 32, 24

	want := make([]int64, conns)
	cs := make([]*net.TCPConn, conns)
	for i := range cs {
		cs[i] = dial(t, p.addr, "")
	}
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i, c := range cs {
		wg.Go(func() {
			n, err := exchange(c, i, rounds, sizes, pauses)
			want[i] = n
			if err != nil {
				errs <- fmt.Errorf("connection %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	eventually(t, 10*time.Second, "a log line per connection", func() bool {
		return len(p.log.conns()) == conns
	})
	byClient := map[string]map[string]any{}
	for _, r := range p.log.conns() {
		byClient[r["client"].(string)] = r
	}
	for i, c := range cs {
		r := byClient[c.LocalAddr().String()]
		if r == nil || r["end"] != EndClientClosed.String() ||
			r["bytes_in"] != float64(want[i]) || r["bytes_out"] != float64(want[i]) {
			t.Errorf("connection %d: log %v, want client_closed and %d bytes each way", i, r, want[i])
		}
	}
}

// exchange runs rounds of request and echo on c with pauses between them,
// then half-closes and reads to EOF. It returns the bytes sent.
func exchange(c *net.TCPConn, id, rounds int, sizes []int, pauses []time.Duration) (int64, error) {
	c.SetDeadline(time.Now().Add(20 * time.Second))
	var total int64
	for r := range rounds {
		msg := pattern(id, r, sizes[(id+r)%len(sizes)])
		werr := make(chan error, 1)
		go func() {
			_, err := c.Write(msg)
			werr <- err
		}()
		got := make([]byte, len(msg))
		_, err := io.ReadFull(c, got)
		if err := errors.Join(err, <-werr); err != nil {
			return total, fmt.Errorf("round %d: %w", r, err)
		}
		if !bytes.Equal(got, msg) {
			return total, fmt.Errorf("round %d: echo differs from the %d bytes sent", r, len(msg))
		}
		total += int64(len(msg))
		time.Sleep(pauses[(id*7+r)%len(pauses)]) // the traffic pattern under test
	}
	if err := c.CloseWrite(); err != nil {
		return total, err
	}
	if rest, err := io.ReadAll(c); err != nil || len(rest) > 0 {
		return total, fmt.Errorf("after FIN: read %d bytes, %v; want EOF", len(rest), err)
	}
	return total, c.Close()
}

func TestReviewResetWhileParked(t *testing.T) {
	t.Run("client resets", func(t *testing.T) {
		backendErr := make(chan error, 1)
		b := startBackend(t, func(c *net.TCPConn) {
			c.Write([]byte("hi\n"))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := io.Copy(io.Discard, c)
			backendErr <- err
		})
		p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr)})
		c := dial(t, p.addr, "")
		readLine(t, c)
		waitParked(t, p.Server, 1)
		c.SetLinger(0)
		c.Close()
		if err := <-backendErr; !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("backend saw %v, want a reset", err)
		}
		p.log.waitEnd(t, EndClientReset)
	})
	t.Run("backend resets", func(t *testing.T) {
		reset, open := gate(t)
		b := startBackend(t, func(c *net.TCPConn) {
			c.Write([]byte("hi\n"))
			<-reset
			c.SetLinger(0)
			c.Close()
		})
		p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr)})
		c := dial(t, p.addr, "")
		readLine(t, c)
		waitParked(t, p.Server, 1)
		open()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, c); !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("client saw %v, want a reset", err)
		}
		p.log.waitEnd(t, EndBackendReset)
	})
	t.Run("backend resets after client FIN", func(t *testing.T) {
		// The client has half-closed; only the backend-to-client direction
		// is left, parked. The backend's reset must still reach the client
		// as a reset.
		reset, open := gate(t)
		b := startBackend(t, func(c *net.TCPConn) {
			io.Copy(io.Discard, c)
			<-reset
			c.SetLinger(0)
			c.Close()
		})
		p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr)})
		c := dial(t, p.addr, "")
		c.Write([]byte("request"))
		c.CloseWrite()
		waitDir(t, p.Server, 0, dirDone)
		waitDir(t, p.Server, 1, dirWaiting)
		open()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, c); !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("client saw %v, want a reset", err)
		}
		p.log.waitEnd(t, EndBackendReset)
	})
}

func TestReviewHalfCloseWhileParked(t *testing.T) {
	t.Run("client first", func(t *testing.T) {
		answer, open := gate(t)
		b := startBackend(t, func(c *net.TCPConn) {
			c.Write([]byte("hi\n"))
			got, _ := io.ReadAll(c)
			<-answer
			c.Write(append([]byte("got "), got...))
			c.CloseWrite()
		})
		p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr)})
		c := dial(t, p.addr, "")
		readLine(t, c)
		c.Write([]byte("question"))
		waitParked(t, p.Server, 1)
		c.CloseWrite()
		// The FIN wakes the client's direction, which ends; the other one
		// parks again and must wake for the late answer.
		waitDir(t, p.Server, 0, dirDone)
		waitDir(t, p.Server, 1, dirWaiting)
		open()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "got question" {
			t.Fatalf("read %q, %v; want %q then EOF", got, err, "got question")
		}
		rec := p.log.waitEnd(t, EndClientClosed)
		if rec["bytes_in"] != float64(len("question")) || rec["bytes_out"] != float64(len("hi\ngot question")) {
			t.Fatalf("byte counts in %v", rec)
		}
	})
	t.Run("backend first", func(t *testing.T) {
		fin, open := gate(t)
		heard := make(chan string, 1)
		b := startBackend(t, func(c *net.TCPConn) {
			c.Write([]byte("hi\n"))
			<-fin
			c.CloseWrite()
			got, _ := io.ReadAll(c)
			heard <- string(got)
		})
		p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr)})
		c := dial(t, p.addr, "")
		readLine(t, c)
		waitParked(t, p.Server, 1)
		open()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if rest, err := io.ReadAll(c); err != nil || len(rest) > 0 {
			t.Fatalf("read %q, %v; want EOF", rest, err)
		}
		waitDir(t, p.Server, 1, dirDone)
		waitDir(t, p.Server, 0, dirWaiting)
		c.Write([]byte("after fin"))
		c.CloseWrite()
		select {
		case h := <-heard:
			if h != "after fin" {
				t.Fatalf("backend heard %q, want %q", h, "after fin")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("backend never saw the client's bytes and FIN")
		}
		rec := p.log.waitEnd(t, EndBackendClosed)
		if rec["bytes_in"] != float64(len("after fin")) || rec["bytes_out"] != float64(len("hi\n")) {
			t.Fatalf("byte counts in %v", rec)
		}
	})
}

func TestReviewSlowReaders(t *testing.T) {
	const size = 3 << 20
	t.Run("client reads slowly", func(t *testing.T) {
		b := startBackend(t, func(c *net.TCPConn) {
			c.Write(pattern(1, 0, size))
			c.CloseWrite()
			io.Copy(io.Discard, c)
		})
		p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr)})
		c := dial(t, p.addr, "")
		c.SetReadBuffer(32 << 10)
		got := slowRead(t, c, 2*idlePause)
		if !bytes.Equal(got, pattern(1, 0, size)) {
			t.Fatalf("client got %d bytes, not the %d sent", len(got), size)
		}
		c.Close()
		if rec := p.log.waitEnd(t, EndBackendClosed); rec["bytes_out"] != float64(size) {
			t.Fatalf("bytes_out in %v, want %d", rec, size)
		}
	})
	t.Run("backend reads slowly", func(t *testing.T) {
		res := make(chan []byte, 1)
		b := startBackend(t, func(c *net.TCPConn) {
			c.SetReadBuffer(32 << 10)
			res <- slowRead(t, c, 40*time.Millisecond)
			c.Write([]byte("done\n"))
		})
		p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr)})
		c := dial(t, p.addr, "")
		go func() {
			c.Write(pattern(2, 0, size))
			c.CloseWrite()
		}()
		if got := <-res; !bytes.Equal(got, pattern(2, 0, size)) {
			t.Fatalf("backend got %d bytes, not the %d sent", len(got), size)
		}
		if line := readLine(t, c); line != "done" {
			t.Fatalf("answer %q", line)
		}
		if rec := p.log.waitEnd(t, EndClientClosed); rec["bytes_in"] != float64(size) {
			t.Fatalf("bytes_in in %v, want %d", rec, size)
		}
	})
}

// slowRead reads c to EOF in 256 KiB gulps with a pause after each, long
// enough for the proxy's writer to stall and its source to pass the park
// delay. It returns nil on a read error (reported through t.Error, not
// Fatal, as it may run on a backend's goroutine).
func slowRead(t *testing.T, c *net.TCPConn, pause time.Duration) []byte {
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	var out []byte
	buf := make([]byte, 256<<10)
	for {
		n, err := io.ReadFull(c, buf)
		out = append(out, buf[:n]...)
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return out
		case err != nil:
			t.Errorf("slow read after %d bytes: %v", len(out), err)
			return nil
		}
		time.Sleep(pause) // the traffic pattern under test
	}
}

func TestReviewChurnReusesFDs(t *testing.T) {
	// Connections park and are then reset or closed while new ones are
	// opened, so that new sockets get the fd numbers of parked ones that
	// just closed. Each backend connection greets with its own number and
	// echoes: a stale readiness event applied to the wrong connection, or
	// a direction woken twice, shows up as a wrong greeting, a wrong echo,
	// a hang, or a missing or duplicated log line.
	var next atomic.Int64
	b := startBackend(t, func(c *net.TCPConn) {
		fmt.Fprintf(c, "%d\n", next.Add(1))
		io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{c})
	})
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr)})
	const waves, perWave = 6, 24
	seen := map[string]bool{}
	closed := 0
	for w := range waves {
		cs := make([]*net.TCPConn, perWave)
		for i := range cs {
			cs[i] = dial(t, p.addr, "")
			id := readLine(t, cs[i])
			if seen[id] {
				t.Fatalf("greeting %q seen twice", id)
			}
			seen[id] = true
		}
		waitParked(t, p.Server, perWave)
		for i, c := range cs {
			msg := fmt.Sprintf("wave %d conn %d", w, i)
			fmt.Fprintln(c, msg)
			if got := readLine(t, c); got != msg {
				t.Fatalf("echo %q, want %q", got, msg)
			}
		}
		waitParked(t, p.Server, perWave)
		for i, c := range cs {
			if i%2 == 0 {
				c.SetLinger(0)
			}
			c.Close()
		}
		closed += perWave
		eventually(t, 5*time.Second, "every closed connection to be logged", func() bool {
			return len(p.log.conns()) == closed && len(liveConns(p.Server)) == 0
		})
	}
	ends := map[any]int{}
	for _, r := range p.log.conns() {
		ends[r["end"]]++
	}
	half := waves * perWave / 2
	if ends[EndClientReset.String()] != half || ends[EndClientClosed.String()] != half {
		t.Fatalf("ends %v, want %d client_reset and %d client_closed", ends, half, half)
	}
}

func TestReviewShutdownWithParkedAndBusy(t *testing.T) {
	b := startBackend(t, func(c *net.TCPConn) {
		var line [5]byte
		if _, err := io.ReadFull(c, line[:]); err != nil {
			return
		}
		if string(line[:]) == "pour\n" {
			chunk := make([]byte, 32<<10)
			for {
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		}
		c.Write(line[:])
		io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{c})
	})
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr)})
	const idle = 4
	var cs []*net.TCPConn
	for range idle {
		c := dial(t, p.addr, "")
		c.Write([]byte("idle\n"))
		if got := readLine(t, c); got != "idle" {
			t.Fatalf("echo %q", got)
		}
		cs = append(cs, c)
	}
	waitParked(t, p.Server, idle)
	busy := dial(t, p.addr, "")
	busy.Write([]byte("pour\n"))
	var poured atomic.Int64
	busyDone := make(chan error, 1)
	go func() {
		busy.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := io.Copy(io.Discard, busy)
		poured.Store(n)
		busyDone <- err
	}()
	eventually(t, 5*time.Second, "bytes to pour", func() bool {
		return len(liveConns(p.Server)) == idle+1
	})

	// The test ends the drain itself once it has checked it, so that a
	// slow machine cannot end it early.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- p.Shutdown(ctx) }()
	// While draining, a parked connection still wakes and works.
	eventually(t, 5*time.Second, "listener closed", func() bool {
		nc, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err == nil {
			nc.Close()
			return false
		}
		return true
	})
	cs[0].Write([]byte("still\n"))
	if got := readLine(t, cs[0]); got != "still" {
		t.Fatalf("echo during drain %q", got)
	}
	// One parked connection ends on its own during the drain.
	cs[1].Close()
	eventually(t, 5*time.Second, "the closed connection's log line", func() bool {
		for _, r := range p.log.conns() {
			if r["client"] == cs[1].LocalAddr().String() {
				return r["end"] == EndClientClosed.String()
			}
		}
		return false
	})
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with connections live", err)
	default:
	}
	cancel()
	select {
	case err := <-shut:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Shutdown = %v, want Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return once its context ended")
	}
	// Shutdown has returned: everything it closed is closed.
	if len(liveConns(p.Server)) != 0 {
		t.Fatal("connections left after Shutdown returned")
	}
	for _, c := range cs[2:] {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("drained parked connection: %v", err)
		}
	}
	<-busyDone
	if poured.Load() == 0 {
		t.Fatal("the busy connection moved nothing")
	}
	ours := map[any]bool{busy.LocalAddr().String(): true}
	for _, c := range cs {
		ours[c.LocalAddr().String()] = true
	}
	ends := map[any]int{}
	for _, r := range p.log.conns() {
		if ours[r["client"]] { // not the probes of the listener above
			ends[r["end"]]++
		}
	}
	// Drained: the busy one and the idle ones but cs[1], which its client
	// closed.
	if ends[EndDrain.String()] != idle || ends[EndClientClosed.String()] != 1 {
		t.Fatalf("ends %v, want %d drain and 1 client_closed", ends, idle)
	}
	// Close after Shutdown is a no-op, and does not hang.
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close after Shutdown hangs")
	}
}
