package udp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"sluice/internal/pool"
)

// Handoff is a live session detached from one Server's loop (Export) to be
// adopted by another's (Import), typically in a new sluice process after a
// binary upgrade that shares the listening sockets: its socket connected to
// the backend (so the backend goes on seeing the same source port, and
// replies queued on it are read where it goes) and what the loop needs to
// go on. The socket is a file descriptor (not in the JSON form: it travels
// beside it, with SCM_RIGHTS); whoever holds a Handoff owns it.
type Handoff struct {
	// Socket is the index of the listening socket (the loop) it came
	// from; Import puts it on the loop of the same index, if there is
	// one, which reads the same socket when the sockets are passed on in
	// order.
	Socket int `json:"socket"`
	// FD is the session's socket, connected to Backend.
	FD int `json:"-"`
	// Client is the flow's client; Via, if valid, the proxy that sent
	// its datagrams with a PROXY header naming Client (replies go to
	// Via then, else to Client). Zone is the IPv6 scope of the address
	// replies go to.
	Client netip.AddrPort `json:"client"`
	Via    netip.AddrPort `json:"via,omitzero"`
	Zone   uint32         `json:"zone,omitempty"`
	// Local is the address the client sent to, on a listener bound to
	// every address (IP_PKTINFO), and IfIndex the interface replies from
	// an IPv6 link-local one leave by; zero otherwise.
	Local   netip.Addr `json:"local,omitzero"`
	IfIndex uint32     `json:"ifindex,omitempty"`
	// Backend is the backend's address: the importer looks it up in its
	// own pools.
	Backend netip.AddrPort `json:"backend"`
	// Preamble is what goes in front of each datagram to the backend
	// (the BackendPreamble the session started with).
	Preamble []byte `json:"preamble,omitempty"`
	// Start is when the session opened; Idle how long ago its last
	// datagram moved, which its session timeout counts from.
	Start time.Time     `json:"start"`
	Idle  time.Duration `json:"idle"`
	// Replies is how many datagrams the backend has sent back, for
	// Responses; the rest are the counts logged when it ends.
	Replies      int   `json:"replies,omitempty"`
	DatagramsIn  int64 `json:"datagrams_in,omitempty"`
	DatagramsOut int64 `json:"datagrams_out,omitempty"`
	BytesIn      int64 `json:"bytes_in,omitempty"`
	BytesOut     int64 `json:"bytes_out,omitempty"`
}

// peer is where the session's replies go: the sender of its datagrams.
func (h *Handoff) peer() netip.AddrPort {
	if h.Via.IsValid() {
		return h.Via
	}
	return h.Client
}

// ErrNotServing is returned by Import when the Server has no loop to
// adopt sessions: Serve has not started in time, or it failed.
var ErrNotServing = errors.New("l4/udp: server not serving")

func (s *Server) init() {
	s.once.Do(func() { s.started = make(chan struct{}) })
}

// markStarted says that Serve has set its loops up (or failed to).
func (s *Server) markStarted() {
	s.init()
	s.startOnce.Do(func() { close(s.started) })
}

// Export stops reading the listening sockets (they stay open, their
// datagrams queued for another process that shares them) and detaches
// every live session from the loops, in order of last activity, for
// another Server to Import. Their sockets leave the loops' epoll sets
// open: the caller owns them, and closes them once the other side has
// its own descriptors. Nothing is logged or counted as ended for them
// here: the importer logs each session, with its whole counts, when it
// ends.
//
// Then Close the Server; or, if the hand-over failed, Import what was not
// handed over back and Resume.
func (s *Server) Export() []Handoff {
	var mu sync.Mutex
	var out []Handoff
	s.onLoops(func(l *loop) {
		hs := l.export()
		mu.Lock()
		out = append(out, hs...)
		mu.Unlock()
	})
	return out
}

// Resume reads the listening sockets again after Export, or for the
// first time on a Server started Held.
func (s *Server) Resume() {
	s.mu.Lock()
	s.resumed = true
	s.mu.Unlock()
	s.onLoops(func(l *loop) { l.resume() })
}

// onLoops runs f on each loop, on the loop's goroutine, and waits for all.
func (s *Server) onLoops(f func(l *loop)) {
	s.mu.Lock()
	loops := slices.Clone(s.loops)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, l := range loops {
		wg.Add(1)
		if !l.post(func(l *loop) {
			defer wg.Done()
			f(l)
		}) {
			wg.Done()
		}
	}
	wg.Wait()
}

// Import adopts sessions exported by another Server (Export) into this
// one's loops, each on the loop of its Handoff's Socket (modulo the
// number of loops): replies queued on or arriving at their sockets go to
// their clients, and the clients' next datagrams to the same sockets.
// backend returns the *pool.Backend of an address in this process's
// pools, or nil: a session whose backend is not there any more is
// closed, and its flow's next datagram picks a backend afresh. Adopted
// sessions count against MaxSessions even past it: they exist already.
//
// Import waits (until ctx ends) for Serve to have started. It takes
// ownership of every Handoff's socket: those it could not adopt are
// closed and counted in the returned error. It returns how many it
// adopted.
func (s *Server) Import(ctx context.Context, hs []Handoff, backend func(netip.AddrPort) *pool.Backend) (int, error) {
	s.init()
	select {
	case <-s.started:
	case <-ctx.Done():
		return 0, closeHandoffs(hs, fmt.Errorf("importing %d udp sessions: %w", len(hs), ErrNotServing))
	}
	s.mu.Lock()
	loops := slices.Clone(s.loops)
	s.mu.Unlock()
	if len(loops) == 0 {
		return 0, closeHandoffs(hs, fmt.Errorf("importing %d udp sessions: %w", len(hs), ErrNotServing))
	}
	byLoop := make([][]Handoff, len(loops))
	for _, h := range hs {
		i := max(h.Socket, 0) % len(loops)
		byLoop[i] = append(byLoop[i], h)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	adopted := 0
	var errs []error
	for i, l := range loops {
		batch := byLoop[i]
		if len(batch) == 0 {
			continue
		}
		wg.Add(1)
		posted := l.post(func(l *loop) {
			defer wg.Done()
			n, err := l.adoptAll(batch, backend)
			mu.Lock()
			adopted += n
			errs = append(errs, err)
			mu.Unlock()
		})
		if !posted {
			wg.Done()
			mu.Lock()
			errs = append(errs, closeHandoffs(batch, fmt.Errorf("importing %d udp sessions: %w", len(batch), ErrServerClosed)))
			mu.Unlock()
		}
	}
	wg.Wait()
	return adopted, errors.Join(errs...)
}

// handedOff uncounts a live session exported to another Server: it did
// not end here, and is counted where it ends.
func (c *Counters) handedOff(b *BackendCounters) {
	if c == nil || b == nil {
		return
	}
	b.live.Add(-1)
}
