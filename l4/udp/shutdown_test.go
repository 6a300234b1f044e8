package udp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"sluice/internal/listen"
	"sluice/internal/pool"
)

func TestShutdownDrainsLiveSessions(t *testing.T) {
	const timeout = 500 * time.Millisecond
	b := startBackend(t, "b1", "127.0.0.1", 0)
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, b),
		SessionTimeout: timeout}, "127.0.0.1:0")
	live := dial(t, p.addr)
	ask(t, live, "before")
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- p.Shutdown(ctx)
	}()
	// New flows until one is dropped for the drain; the live session is
	// kept busy meanwhile, so that it cannot idle out whatever the wait,
	// and once the drop is counted it still carries datagrams both ways.
	var sent time.Time // before the live session's last datagram
	eventually(t, 5*time.Second, "a new flow to be dropped for the drain", func() bool {
		draining := p.Stats().DroppedDraining > 0
		sent = time.Now()
		if got := ask(t, live, "during"); got != "b1 during" {
			t.Fatalf("reply to the live session %q", got)
		}
		if draining {
			return true
		}
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(p.addr))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("new flow"))
		return false
	})
	// Once it has been idle for its timeout, Shutdown returns; not before
	// (checked below, as a test stalled for the timeout may come late).
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the last session ended")
	}
	if d := time.Since(sent); d < timeout {
		t.Errorf("Shutdown returned %v after the live session's last datagram, before its %v timeout: it did not wait for the session", d, timeout)
	}
	p.log.waitEnd(t, EndIdleTimeout)
}

func TestShutdownDeadlineEndsSessions(t *testing.T) {
	b := startBackend(t, "b1", "127.0.0.1", 0)
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, b)}, "127.0.0.1:0")
	for range 3 {
		ask(t, dial(t, p.addr), "x")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown returned %v, want the deadline", err)
	}
	drained := 0
	for _, r := range p.log.sessions() {
		if r["end"] == EndDrain.String() {
			drained++
		}
	}
	if drained != 3 {
		t.Fatalf("%d sessions ended by the drain, want 3: %v", drained, p.log.sessions())
	}
	if n := p.Stats().Sessions; n != 0 {
		t.Fatalf("%d sessions after Shutdown", n)
	}
	// The sockets are closed: the port can be bound without SO_REUSEPORT.
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(p.addr))
	if err != nil {
		t.Fatalf("listening socket still open after Shutdown: %v", err)
	}
	c.Close()
}

func TestServeAfterShutdown(t *testing.T) {
	s := &Server{Pool: newPool(t, pool.RoundRobin, startBackend(t, "b1", "127.0.0.1", 0))}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	conns, err := listen.UDP(context.Background(), netip.MustParseAddrPort("127.0.0.1:0"), 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(conns); err != ErrServerClosed {
		t.Fatalf("Serve after Shutdown returned %v", err)
	}
	if err := conns[0].Close(); err == nil {
		t.Fatal("Serve after Shutdown left its socket open")
	}
}
