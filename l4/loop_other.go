//go:build !linux

package l4

import (
	"errors"
	"net"
	"net/netip"

	"sluice/internal/pool"
)

// The event loop needs Linux's epoll and splice; sluice is deployed on
// Linux. Elsewhere the package builds, and Serve reports what is missing.

type loop struct{ index int }

type pipe struct{}

var errNeedsLinux = errors.New("l4: the TCP proxy needs Linux (epoll, splice)")

func newLoop(s *Server, ln *net.TCPListener) (*loop, error) {
	ln.Close()
	return nil, errNeedsLinux
}

func (l *loop) run()                          {}
func (l *loop) wake()                         {}
func (l *loop) post(f func(*loop)) bool       { return false }
func (l *loop) closeBackend(b *pool.Backend)  {}
func (l *loop) closeOne(b *pool.Backend) bool { return false }

// termSet is empty where Serve cannot run.
type termSet struct{}

func (termSet) closeAll(End)                {}
func (termSet) closeBackend(*pool.Backend)  {}
func (termSet) closeOne(*pool.Backend) bool { return false }

func (l *loop) export() []Handoff { return nil }

func (l *loop) resume() {}

func (l *loop) adoptAll(hs []Handoff, _ func(netip.AddrPort) *pool.Backend) (int, error) {
	for _, h := range hs {
		closeHandoff(h)
	}
	return 0, errNeedsLinux
}

func closeHandoff(Handoff) {}
