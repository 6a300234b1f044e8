package listen

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePort sets SO_REUSEPORT before bind, so that several sockets (in this
// process or a successor during an upgrade) can listen on one address. On a
// TCP socket it also sets TCP_NODELAY, which the connections accepted from
// it inherit (from the moment of their handshake): l4 then sets nothing per
// connection.
func reusePort(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		if serr == nil && network[:3] == "tcp" {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}
