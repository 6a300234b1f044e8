//go:build !linux

package udp

import (
	"errors"
	"net"
)

// loop is not implemented off Linux: the event loop is built on epoll,
// recvmmsg and sendmmsg.
type loop struct{ stats counters }

func newLoop(s *Server, conn *net.UDPConn) (*loop, error) {
	return nil, errors.New("l4/udp: UDP balancing needs Linux (epoll, recvmmsg, sendmmsg)")
}

func (l *loop) run()     {}
func (l *loop) wake()    {}
func (l *loop) discard() {}
