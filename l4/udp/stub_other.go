//go:build !linux

package udp

import (
	"errors"
	"net"
	"net/netip"

	"sluice/internal/pool"
)

// loop is not implemented off Linux: the event loop is built on epoll,
// recvmmsg and sendmmsg.
type loop struct {
	stats counters
	index int
}

func newLoop(s *Server, conn *net.UDPConn) (*loop, error) {
	return nil, errors.New("l4/udp: UDP balancing needs Linux (epoll, recvmmsg, sendmmsg)")
}

func (l *loop) run()     {}
func (l *loop) wake()    {}
func (l *loop) discard() {}

func (l *loop) post(f func(*loop)) bool { return false }
func (l *loop) export() []Handoff       { return nil }
func (l *loop) resume()                 {}

func (l *loop) adoptAll(hs []Handoff, backend func(netip.AddrPort) *pool.Backend) (int, error) {
	return 0, closeHandoffs(hs, errors.New("l4/udp: UDP balancing needs Linux"))
}

func closeHandoffs(hs []Handoff, err error) error { return err }
