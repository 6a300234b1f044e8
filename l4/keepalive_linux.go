package l4

import "golang.org/x/sys/unix"

// setKeepAlive applies k to socket fd: four setsockopt calls when probes
// are on. With off is true, a socket with probes off gets SO_KEEPALIVE
// cleared (one call), for a listening socket that an earlier configuration
// may have turned on; other sockets start with it off and cost nothing.
//
// On a listening socket the setting reaches every connection it accepts:
// Linux copies the socket, keep-alive flag and times included, into each
// new one and starts its keep-alive timer (tcp_create_openreq_child), so
// the client side costs no system call per connection, as TCP_NODELAY.
func setKeepAlive(fd int, k KeepAlive, off bool) unix.Errno {
	if !k.On() {
		if off {
			return setInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0)
		}
		return 0
	}
	idle, interval, count := k.seconds()
	for _, o := range [...]struct{ level, opt, v int }{
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, idle},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, interval},
		{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, count},
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
	} {
		if e := setInt(fd, o.level, o.opt, o.v); e != 0 {
			return e
		}
	}
	return 0
}
