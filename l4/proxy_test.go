package l4

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"sluice/internal/listen"
	"sluice/internal/pool"
)

func TestProxyCarriesBytesAndLogsOneLine(t *testing.T) {
	b := startBackend(t, greeter("b1"))
	p := startProxy(t, &Server{Name: "web", Pool: newPool(t, pool.RoundRobin, 0, b.addr)})
	c := dial(t, p.addr, "")
	if got := readLine(t, c); got != "b1" {
		t.Fatalf("greeting %q, want b1", got)
	}
	// 4 MiB each way: more than a pipe and a socket buffer hold at once.
	payload := make([]byte, 4<<20)
	rand.Read(payload)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.CloseWrite()
		}
		errc <- err
	}()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading echo: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("writing: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("echo differs: got %d bytes, want %d", len(got), len(payload))
	}
	c.Close()
	rec := p.log.waitEnd(t, EndClientClosed)
	want := map[string]any{
		"listener":  "web",
		"client":    c.LocalAddr().String(),
		"backend":   b.addr,
		"bytes_in":  float64(len(payload)),
		"bytes_out": float64(len(payload) + len("b1\n")),
	}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("log %s = %v, want %v (record %v)", k, rec[k], v, rec)
		}
	}
	if _, ok := rec["duration"]; !ok {
		t.Errorf("log record has no duration: %v", rec)
	}
}

func TestHalfClose(t *testing.T) {
	t.Run("client first", func(t *testing.T) {
		// The backend reads to EOF, then answers with what it read: the
		// answer must still reach a client that has shut down writing.
		b := startBackend(t, func(c *net.TCPConn) {
			got, _ := io.ReadAll(c)
			c.Write(append([]byte("got "), got...))
			c.CloseWrite()
		})
		p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr)})
		c := dial(t, p.addr, "")
		c.Write([]byte("question"))
		c.CloseWrite()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "got question" {
			t.Fatalf("read %q, %v; want %q then EOF", got, err, "got question")
		}
		p.log.waitEnd(t, EndClientClosed)
	})
	t.Run("backend first", func(t *testing.T) {
		// The backend says its piece and shuts down writing, then keeps
		// reading: the client's later bytes must still reach it.
		heard := make(chan string, 1)
		b := startBackend(t, func(c *net.TCPConn) {
			c.Write([]byte("bye"))
			c.CloseWrite()
			got, _ := io.ReadAll(c)
			heard <- string(got)
		})
		p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr)})
		c := dial(t, p.addr, "")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "bye" {
			t.Fatalf("read %q, %v; want %q then EOF", got, err, "bye")
		}
		c.Write([]byte("after fin"))
		c.CloseWrite()
		select {
		case h := <-heard:
			if h != "after fin" {
				t.Fatalf("backend heard %q, want %q", h, "after fin")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("backend never saw the client's FIN")
		}
		p.log.waitEnd(t, EndBackendClosed)
	})
}

func TestResetIsPassedOn(t *testing.T) {
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
		c.SetLinger(0)
		c.Close()
		if err := <-backendErr; !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("backend saw %v, want a reset (ECONNRESET)", err)
		}
		p.log.waitEnd(t, EndClientReset)
	})
	t.Run("backend resets", func(t *testing.T) {
		b := startBackend(t, func(c *net.TCPConn) {
			c.Write([]byte("hi\n"))
			buf := make([]byte, 4)
			io.ReadFull(c, buf)
			c.SetLinger(0)
			c.Close()
		})
		p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr)})
		c := dial(t, p.addr, "")
		readLine(t, c)
		c.Write([]byte("ping"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.Copy(io.Discard, c)
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("client saw %v, want a reset (ECONNRESET)", err)
		}
		p.log.waitEnd(t, EndBackendReset)
	})
}

func TestIdleTimeout(t *testing.T) {
	b := startBackend(t, greeter("b"))
	p := startProxy(t, &Server{
		Pool:        newPool(t, pool.RoundRobin, 0, b.addr),
		IdleTimeout: time.Second,
	})
	// A connection that keeps talking outlives the idle timeout. (Its
	// pauses are well below the timeout, so that a stall of this loaded
	// machine cannot pass for idleness.)
	busy := dial(t, p.addr, "")
	readLine(t, busy)
	for range 15 {
		time.Sleep(100 * time.Millisecond) // the traffic pattern under test, not a wait
		busy.Write([]byte("x\n"))
		if got := readLine(t, busy); got != "x" {
			t.Fatalf("echo %q, want x", got)
		}
	}
	// A silent one is closed.
	start := time.Now()
	quiet := dial(t, p.addr, "")
	readLine(t, quiet)
	quiet.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := quiet.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle connection read %d bytes, %v; want EOF", n, err)
	}
	if d := time.Since(start); d < time.Second {
		t.Fatalf("closed after %v, before the 1s idle timeout", d)
	}
	p.log.waitEnd(t, EndIdleTimeout)
}

func TestHalfClosedTimeout(t *testing.T) {
	// The backend never answers nor closes: after the client's FIN, the
	// half-closed timeout, not the long idle one, must end it.
	hold := make(chan struct{})
	b := startBackend(t, func(c *net.TCPConn) { io.Copy(io.Discard, c); <-hold })
	t.Cleanup(func() { close(hold) }) // runs before the backend's cleanup
	p := startProxy(t, &Server{
		Pool:              newPool(t, pool.RoundRobin, 0, b.addr),
		IdleTimeout:       time.Hour,
		HalfClosedTimeout: 300 * time.Millisecond,
	})
	c := dial(t, p.addr, "")
	c.Write([]byte("req"))
	c.CloseWrite()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read %v, want EOF from the half-closed timeout", err)
	}
	p.log.waitEnd(t, EndHalfClosedTimeout)
}

func TestConnectRetry(t *testing.T) {
	live := startBackend(t, greeter("live"))
	dead1, dead2 := deadPort(t), deadPort(t)
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 2, dead1, live.addr, dead2)})
	for i := range 9 {
		c := dial(t, p.addr, "")
		if got := readLine(t, c); got != "live" {
			t.Fatalf("connection %d greeted by %q, want live", i, got)
		}
		c.Close()
	}
	retried := 0
	eventually(t, 5*time.Second, "9 log lines", func() bool { return len(p.log.conns()) == 9 })
	for _, r := range p.log.conns() {
		if r["retries"] != nil {
			retried++
		}
	}
	if retried == 0 {
		t.Fatal("no log line reports a retry, though two of three backends are down")
	}
}

func TestConnectFailsWhenNoBackendAccepts(t *testing.T) {
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 5, deadPort(t), deadPort(t))})
	if err := refused(t, p.addr); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client saw %v with every backend down, want a reset", err)
	}
	rec := p.log.waitEnd(t, EndConnectFailed)
	if rec["error"] == nil || rec["backend"] != "" {
		t.Fatalf("connect_failed record lacks the error or names a backend: %v", rec)
	}
}

func TestMaxConnectionsQueues(t *testing.T) {
	b := startBackend(t, greeter("b"))
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr), MaxConnections: 2})
	c1, c2 := dial(t, p.addr, ""), dial(t, p.addr, "")
	readLine(t, c1)
	readLine(t, c2)
	c3 := dial(t, p.addr, "")
	// The third is accepted by the kernel but must not reach a backend
	// while two are live.
	c3.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c3.Read(make([]byte, 1)); n != 0 || !errors.Is(err, syscall.EAGAIN) && !isTimeout(err) {
		t.Fatalf("third connection served beyond max_connections: %d bytes, %v", n, err)
	}
	c1.Close()
	if got := readLine(t, c3); got != "b" {
		t.Fatalf("third connection greeted %q after a slot freed, want b", got)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestShutdownDrains(t *testing.T) {
	b := startBackend(t, greeter("b"))
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr)})
	c := dial(t, p.addr, "")
	readLine(t, c)

	done := make(chan error, 1)
	go func() { done <- p.Shutdown(context.Background()) }()
	// Stopped accepting: new connections are refused...
	eventually(t, 5*time.Second, "listener closed", func() bool {
		nc, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err == nil {
			nc.Close()
			return false
		}
		return true
	})
	// ...while the live one still works,
	c.Write([]byte("still here\n"))
	if got := readLine(t, c); got != "still here" {
		t.Fatalf("echo during drain %q", got)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a connection live", err)
	default:
	}
	// ...and Shutdown returns once it ends.
	c.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the last connection closed")
	}
}

func TestShutdownForcesAfterDeadline(t *testing.T) {
	b := startBackend(t, greeter("b"))
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr)})
	c := dial(t, p.addr, "")
	readLine(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after the drain deadline")
	}
	p.log.waitEnd(t, EndDrain)
}

func TestIPv6(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{addr: ln.Addr().String(), ln: ln}
	go func() {
		c, err := ln.Accept()
		if err == nil {
			greeter("six")(c.(*net.TCPConn))
			c.Close()
		}
	}()
	defer ln.Close()
	lns, err := listen.TCP(context.Background(), netip.MustParseAddrPort("[::1]:0"), 1)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr), Logger: slog.New(slog.DiscardHandler)}
	done := make(chan error, 1)
	go func() { done <- s.Serve(lns) }()
	defer func() { s.Close(); <-done }()
	c := dial(t, lns[0].Addr().String(), "")
	if got := readLine(t, c); got != "six" {
		t.Fatalf("greeting over IPv6 %q", got)
	}
}
