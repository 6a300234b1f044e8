package l4

import (
	"sync"

	"sluice/internal/pool"
)

// termSet is the Server's live goroutine-run connections, so that the
// drain deadline and CloseBackend can end them. A connection takes its
// lock twice (in and out): a TLS handshake costs a thousand times that.
type termSet struct {
	mu    sync.Mutex
	conns map[*termConn]struct{}
	force End // once set, new connections are ended at once
}

// add records c, or reports false when the server is closing.
func (ts *termSet) add(c *termConn) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.force != EndNone {
		return false
	}
	if ts.conns == nil {
		ts.conns = make(map[*termConn]struct{})
	}
	ts.conns[c] = struct{}{}
	return true
}

func (ts *termSet) remove(c *termConn) {
	ts.mu.Lock()
	delete(ts.conns, c)
	ts.mu.Unlock()
}

// closeAll ends every connection with e and refuses those to come.
func (ts *termSet) closeAll(e End) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.force = e
	for c := range ts.conns {
		c.abort(e)
	}
}

// closeBackend ends the connections to b.
func (ts *termSet) closeBackend(b *pool.Backend) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for c := range ts.conns {
		if c.backend() == b {
			c.abort(EndBackendDown)
		}
	}
}

// closeOne ends one connection to b (any, for nil b) that is not ending
// already, for the drain, and reports whether there was one.
func (ts *termSet) closeOne(b *pool.Backend) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for c := range ts.conns {
		if End(c.end.Load()) == EndNone && (b == nil || c.backend() == b) {
			c.abort(EndDrain)
			return true
		}
	}
	return false
}
