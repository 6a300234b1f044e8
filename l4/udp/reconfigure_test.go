package udp

import (
	"testing"
	"time"

	"sluice/internal/pool"
)

// Reconfigure applies a reload's settings to a running server: a live
// flow keeps its session and backend, new flows go to the new pool, and
// the new session timeout and Responses apply to every session.
func TestReconfigureKeepsFlowsAndAppliesSettings(t *testing.T) {
	b1 := startBackend(t, "b1", "127.0.0.1", 2)
	b2 := startBackend(t, "b2", "127.0.0.1", 2)
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, b1), SessionTimeout: time.Minute}, "127.0.0.1:0")

	old := dial(t, p.addr)
	if got := from(ask(t, old, "x")); got != "b1" {
		t.Fatalf("first flow went to %s, want b1", got)
	}
	reply(t, old, 5*time.Second) // b1 answers twice

	p.Reconfigure(Settings{Pool: newPool(t, pool.RoundRobin, b2), SessionTimeout: 300 * time.Millisecond, Responses: 3})

	// The live flow stays on its session: same backend, same source
	// port towards it. Responses is now 3, and the session has had two
	// replies: the third ends it, the fourth is dropped.
	if got := from(ask(t, old, "y")); got != "b1" {
		t.Errorf("live flow went to %s after Reconfigure, want b1 (its session)", got)
	}
	if !silent(old, 200*time.Millisecond) {
		t.Error("a fourth reply came through with Responses = 3")
	}
	if n := b1.sources(); n != 1 {
		t.Errorf("b1 saw %d source ports, want 1: the live session was replaced", n)
	}
	p.log.waitEnd(t, EndResponses)

	// A new flow goes to the new pool.
	c := dial(t, p.addr)
	if got := from(ask(t, c, "z")); got != "b2" {
		t.Errorf("new flow went to %s, want b2 (the new pool)", got)
	}

	// The new timeout ends a session idle for 300ms, not a minute.
	c2 := dial(t, p.addr)
	ask(t, c2, "w")
	start := time.Now()
	eventually(t, 10*time.Second, "the session to expire at the new timeout", func() bool {
		for _, r := range p.log.sessions() {
			if r["end"] == EndIdleTimeout.String() {
				return true
			}
		}
		return false
	})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("session expired %v after its last datagram, want about 300ms", d)
	}
}

// MaxSessions from Reconfigure caps new sessions.
func TestReconfigureMaxSessions(t *testing.T) {
	b := startBackend(t, "b", "127.0.0.1", 0)
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, b), EvictIdle: -1}, "127.0.0.1:0")
	ask(t, dial(t, p.addr), "a")
	p.Reconfigure(Settings{Pool: newPool(t, pool.RoundRobin, b), MaxSessions: 1, EvictIdle: -1})
	c := dial(t, p.addr)
	c.Write([]byte("b"))
	if !silent(c, 300*time.Millisecond) {
		t.Fatal("a second session opened with MaxSessions = 1")
	}
	if st := p.Stats(); st.Sessions != 1 || st.DroppedSessionCap == 0 {
		t.Errorf("stats %+v, want 1 session and a datagram dropped at the cap", st)
	}
}
