//go:build !linux

package l4

import (
	"errors"
	"net"
)

// parker is Linux-only (epoll); elsewhere connections never park.
type parker struct{}

func newParker() (*parker, error)              { return nil, errors.New("l4: parking needs Linux epoll") }
func (p *parker) arm(d *dir, first bool) error { return errors.New("l4: parking needs Linux epoll") }
func (p *parker) loop(wake func(key uint64))   {}
func (p *parker) close() error                 { return nil }
func isClosed(err error) bool                  { return errors.Is(err, net.ErrClosed) }
