package udp

import (
	"net"
	"testing"
	"time"

	"sluice/internal/pool"
)

func TestIdleSessionExpires(t *testing.T) {
	const timeout = 500 * time.Millisecond
	bs := []*backend{startBackend(t, "b1", "127.0.0.1", 0), startBackend(t, "b2", "127.0.0.1", 0)}
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, bs...),
		SessionTimeout: timeout}, "127.0.0.1:0")
	// Activity keeps the session: a flow sends for twice the timeout and
	// stays on its backend (round robin would move a new session on).
	var c *net.UDPConn
	var first string
	var sent, answered time.Time // around the last datagram's send
	eventually(t, 30*time.Second, "a round of activity without a stall", func() bool {
		eventually(t, 5*time.Second, "no session", func() bool { return p.Stats().Sessions == 0 })
		c = dial(t, p.addr)
		sent = time.Now()
		first = from(ask(t, c, "x"))
		for start := sent; time.Since(start) < 2*timeout; {
			// Pacing, not a wait: the gaps are measured below.
			time.Sleep(timeout / 10)
			prev := sent
			sent = time.Now()
			got := from(ask(t, c, "x"))
			answered = time.Now()
			if got == first {
				continue
			}
			// The session can only have expired if no datagram
			// came for the timeout: one sent within it must not move.
			if answered.Sub(prev) < timeout {
				t.Fatalf("active flow moved from %s to %s, %v after the datagram before", first, got, answered.Sub(prev))
			}
			return false // the test stalled for the timeout: try again
		}
		return true
	})
	// Gone already is fine only if the test stalled for the timeout.
	if n := p.Stats().Sessions; n > 1 || n == 0 && time.Since(sent) < timeout {
		t.Fatalf("%d sessions %v after the last datagram, want 1", n, time.Since(sent))
	}
	eventually(t, 5*time.Second, "the session to expire", func() bool { return p.Stats().Sessions == 0 })
	// The session's last datagram came between sent and answered.
	if d := time.Since(sent); d < timeout {
		t.Errorf("expired %v after the last datagram, before the %v timeout", d, timeout)
	}
	if d := time.Since(answered); d > timeout+2*time.Second {
		t.Errorf("expired %v after the last datagram, want about %v", d, timeout)
	}
	p.log.waitEnd(t, EndIdleTimeout)
	// A new session for the same flow: round robin moves on.
	if got := from(ask(t, c, "x")); got == first {
		t.Errorf("after expiry the flow went to %s again; round robin should move on", got)
	}
}
