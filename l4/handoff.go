package l4

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"sluice/internal/pool"
)

// Handoff is an established connection detached from one Server's event
// loop (Export) to be adopted by another's (Import), typically in a new
// sluice process after a binary upgrade: its two sockets and what the
// loop needs to go on where it stopped. The sockets are file descriptors
// (not in the JSON form: they travel beside it, with SCM_RIGHTS); whoever
// holds a Handoff owns them.
type Handoff struct {
	// Socket is the index of the listening socket (the loop) it came
	// from; Import puts it on the loop of the same index, if there is one.
	Socket int `json:"socket"`
	// ClientFD and BackendFD are the connection's sockets.
	ClientFD  int `json:"-"`
	BackendFD int `json:"-"`
	// Addr, Via, Local, ServerName and UniqueID are the Client's, for the
	// log line; TLVs and the pool a preamble chose are not carried.
	Addr       netip.AddrPort `json:"addr"`
	Via        netip.AddrPort `json:"via,omitzero"`
	Local      netip.AddrPort `json:"local,omitzero"`
	ServerName string         `json:"server_name,omitempty"`
	UniqueID   []byte         `json:"unique_id,omitempty"`
	// Backend is the backend's address: the importer looks it up in its
	// own pools, to count the connection on it.
	Backend netip.AddrPort `json:"backend"`
	// Start is when the connection was accepted; Idle how long ago bytes
	// last moved, which its idle (or half-closed) timeout counts from.
	Start time.Time     `json:"start"`
	Idle  time.Duration `json:"idle"`
	// Fin is who sent FIN first (EndClientClosed or EndBackendClosed),
	// EndNone while neither has.
	Fin End `json:"fin,omitempty"`
	// Dirs are the two directions: client to backend, backend to client.
	Dirs [2]HandoffDir `json:"dirs"`
	// CheckFirst says the client's first bytes, not yet received, are to
	// be shown to the Preamble parser (a client that sent no preamble).
	CheckFirst bool `json:"check_first,omitempty"`
}

// HandoffDir is one direction of a Handoff.
type HandoffDir struct {
	// Bytes is what has been written to the destination so far.
	Bytes int64 `json:"bytes"`
	// Pending is what was read from the source and not yet written (the
	// loop's pending buffer, and a splice pipe's contents): it goes out
	// before anything read later.
	Pending []byte `json:"pending,omitempty"`
	// EOF: the source has sent FIN. Done: it was passed on (the
	// destination was shut down for writing).
	EOF  bool `json:"eof,omitempty"`
	Done bool `json:"done,omitempty"`
}

// Export stops accepting (the listening sockets stay open: connections
// wait in their queues, for another process sharing them) and detaches
// from the event loops every connection that is established (proxying
// bytes), returning them for another Server to Import. Their sockets
// leave the loops' epoll sets open: the caller owns them, and must close
// them once the other side has its own descriptors. Nothing is logged
// for them here, nor counted as ended: the importer logs the connection,
// with its whole byte counts, when it ends.
//
// Connections that are not established (reading a preamble, connecting)
// and those run on goroutines (Terminate) are not exported. Then call
// Shutdown, which closes the listening sockets and drains those; or, if
// the hand-over failed, Import what was not handed over back and Resume.
func (s *Server) Export() []Handoff {
	s.init()
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

// Resume accepts again after Export, unless Shutdown or Close was called.
func (s *Server) Resume() {
	s.onLoops(func(l *loop) { l.resume() })
}

// ErrNotServing is returned by Import when the Server has no loop to
// adopt connections: Serve has not started in time, or it has stopped.
var ErrNotServing = errors.New("l4: server not serving")

// Import adopts connections exported by another Server (Export) into this
// one's loops, each on the loop of its Handoff's Socket (modulo the number
// of loops), and goes on proxying them: pending bytes first, then what the
// sockets hold, with their byte counts, start time, idle time and
// half-closed state. backend returns the *pool.Backend of an address in
// this process's pools, or nil (the connection then goes on without being
// counted on a backend). Adopted connections take connection slots even
// past a cap: they exist already.
//
// Import waits (until ctx ends) for Serve to have started. It takes
// ownership of every Handoff's sockets: those it could not adopt are
// closed (a reset to both peers) and counted in the returned error. It
// returns how many it adopted.
func (s *Server) Import(ctx context.Context, hs []Handoff, backend func(netip.AddrPort) *pool.Backend) (int, error) {
	s.init()
	select {
	case <-s.started:
	case <-ctx.Done():
		return 0, s.refuse(hs, fmt.Errorf("importing %d connections: %w", len(hs), ErrNotServing))
	}
	s.mu.Lock()
	loops := s.loops
	s.mu.Unlock()
	if len(loops) == 0 {
		return 0, s.refuse(hs, fmt.Errorf("importing %d connections: %w", len(hs), ErrNotServing))
	}
	byLoop := make([][]Handoff, len(loops))
	for _, h := range hs {
		i := h.Socket % len(loops)
		if i < 0 {
			i = 0
		}
		byLoop[i] = append(byLoop[i], h)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	adopted := 0
	var errs []error
	for i, l := range loops {
		if len(byLoop[i]) == 0 {
			continue
		}
		batch := byLoop[i]
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
			err := s.refuse(batch, fmt.Errorf("importing %d connections: %w", len(batch), ErrNotServing))
			// Under mu: the batches posted to other loops append to
			// errs on those loops' goroutines meanwhile.
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	}
	wg.Wait()
	return adopted, errors.Join(errs...)
}

// handedOff uncounts a live connection exported to another Server: it
// did not end here, and is counted where it ends.
func (c *Counters) handedOff(b *BackendCounters) {
	if c == nil {
		return
	}
	c.live.Add(-1)
	if b != nil {
		b.live.Add(-1)
	}
}

// adopted counts a connection imported, live on backend addr, and returns
// the backend's counters for ended. Its connect time was observed where
// it connected.
func (c *Counters) adopted(addr netip.AddrPort) *BackendCounters {
	if c == nil {
		return nil
	}
	c.live.Add(1)
	b := c.backends.Get(addr)
	b.live.Add(1)
	return b
}

// refuse closes the sockets of hs, which could not be adopted, and
// returns err.
func (s *Server) refuse(hs []Handoff, err error) error {
	for _, h := range hs {
		closeHandoff(h)
	}
	return err
}
