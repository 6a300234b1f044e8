package l4

import (
	"net"
	"syscall"
)

// side is one socket of a proxied connection: the raw *net.TCPConn (never a
// wrapper, which would hide the fd from splice) and its syscall.RawConn,
// through which the copy loop waits on Go's poller.
type side struct {
	c   *net.TCPConn
	raw syscall.RawConn
}

func newSide(c *net.TCPConn) (side, error) {
	raw, err := c.SyscallConn()
	return side{c: c, raw: raw}, err
}

// stop says how one direction's copy ended.
type stop uint8

const (
	stopNone   stop = iota // still running
	stopEOF                // the source sent FIN
	stopSrcErr             // reading the source failed (reset, keepalive timeout)
	stopDstErr             // writing the destination failed (reset, broken pipe)
	stopClosed             // the connection was closed under us (abort, timeout, drain)
	stopPark               // the source has been idle long enough to park
)
