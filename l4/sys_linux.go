package l4

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The system calls of the data path. None of them can block (every socket
// is non-blocking, and a close never lingers), so they go through
// RawSyscall, without the runtime's entersyscall/exitsyscall: measured
// here, that is worth 10-20% of a loop's throughput on small messages.
// They return the bare errno, so that the hot path converts nothing to an
// error interface.

func recvRaw(fd int, b []byte, flags int) (int, unix.Errno) {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))),
		uintptr(len(b)), uintptr(flags), 0, 0)
	return int(n), e
}

func sendRaw(fd int, b []byte) (int, unix.Errno) {
	// MSG_NOSIGNAL: a peer that reset gives EPIPE, not a SIGPIPE.
	n, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))),
		uintptr(len(b)), unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT, 0, 0)
	return int(n), e
}

func spliceRaw(in, out, n int) (int, unix.Errno) {
	m, _, e := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n),
		unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
	return int(m), e
}

func closeRaw(fd int) {
	unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
}

func shutdownWrite(fd int) unix.Errno {
	_, _, e := unix.RawSyscall(unix.SYS_SHUTDOWN, uintptr(fd), unix.SHUT_WR, 0)
	return e
}

func setsockoptRaw(fd, level, opt int, p unsafe.Pointer, n uintptr) unix.Errno {
	_, _, e := unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(p), n, 0)
	return e
}

func setInt(fd, level, opt, v int) unix.Errno {
	x := int32(v)
	return setsockoptRaw(fd, level, opt, unsafe.Pointer(&x), 4)
}

// lingerZero makes fd's close send a reset (RFC 9293 section 3.10.7.1's
// ABORT) rather than a FIN.
func lingerZero(fd int) {
	l := unix.Linger{Onoff: 1, Linger: 0}
	setsockoptRaw(fd, unix.SOL_SOCKET, unix.SO_LINGER, unsafe.Pointer(&l), unsafe.Sizeof(l))
}

func getsockoptRaw(fd, level, opt int, p unsafe.Pointer, n *uint32) unix.Errno {
	_, _, e := unix.RawSyscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(p),
		uintptr(unsafe.Pointer(n)), 0)
	return e
}

// socketError returns fd's pending error (SO_ERROR), clearing it.
func socketError(fd int) unix.Errno {
	var v int32
	n := uint32(4)
	if e := getsockoptRaw(fd, unix.SOL_SOCKET, unix.SO_ERROR, unsafe.Pointer(&v), &n); e != 0 {
		return e
	}
	return unix.Errno(v)
}

// tcpClosed reports whether fd's connection is in state CLOSE. The state is
// the first byte of struct tcp_info, and the kernel copies no more than is
// asked for.
func tcpClosed(fd int) bool {
	var state uint8
	n := uint32(1)
	return getsockoptRaw(fd, unix.IPPROTO_TCP, unix.TCP_INFO, unsafe.Pointer(&state), &n) == 0 &&
		state == unix.BPF_TCP_CLOSE
}

func epollCtl(ep, op, fd int, ev *unix.EpollEvent) unix.Errno {
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(ep), uintptr(op), uintptr(fd),
		uintptr(unsafe.Pointer(ev)), 0, 0)
	return e
}

// accept4Raw accepts a connection, non-blocking and close-on-exec, and
// returns its peer.
func accept4Raw(fd int) (int, netip.AddrPort, error) {
	var rsa unix.RawSockaddrAny
	n := uint32(unsafe.Sizeof(rsa))
	nfd, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(&rsa)),
		uintptr(unsafe.Pointer(&n)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, netip.AddrPort{}, e
	}
	return int(nfd), addrPort(&rsa), nil
}

// localAddr returns the address fd is bound to.
func localAddr(fd int) netip.AddrPort {
	var rsa unix.RawSockaddrAny
	n := uint32(unsafe.Sizeof(rsa))
	_, _, e := unix.RawSyscall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(&rsa)),
		uintptr(unsafe.Pointer(&n)))
	if e != 0 {
		return netip.AddrPort{}
	}
	return addrPort(&rsa)
}

func addrPort(rsa *unix.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}

// connectRaw opens a non-blocking TCP socket with TCP_NODELAY (and ka's
// keep-alive probes, when on) and starts connecting it to addr. It returns
// the socket and 0 or EINPROGRESS; on any other error the socket is closed.
func connectRaw(addr netip.AddrPort, ka KeepAlive) (int, unix.Errno) {
	family := unix.AF_INET6
	if addr.Addr().Is4() {
		family = unix.AF_INET
	}
	fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(family),
		unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if e != 0 {
		return -1, e
	}
	// Small requests and answers go out at once, as on the client side
	// (the listening socket's TCP_NODELAY is inherited by accepted ones).
	if e := setInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); e != 0 {
		closeRaw(int(fd))
		return -1, e
	}
	if e := setKeepAlive(int(fd), ka, false); e != 0 {
		closeRaw(int(fd))
		return -1, e
	}
	port := addr.Port()
	var p unsafe.Pointer
	var n uintptr
	var sa4 unix.RawSockaddrInet4
	var sa6 unix.RawSockaddrInet6
	if family == unix.AF_INET {
		sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: addr.Addr().As4()}
		*(*[2]byte)(unsafe.Pointer(&sa4.Port)) = [2]byte{byte(port >> 8), byte(port)}
		p, n = unsafe.Pointer(&sa4), unsafe.Sizeof(sa4)
	} else {
		sa6 = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: addr.Addr().As16()}
		*(*[2]byte)(unsafe.Pointer(&sa6.Port)) = [2]byte{byte(port >> 8), byte(port)}
		p, n = unsafe.Pointer(&sa6), unsafe.Sizeof(sa6)
	}
	_, _, e = unix.RawSyscall(unix.SYS_CONNECT, fd, uintptr(p), n)
	if e != 0 && e != unix.EINPROGRESS {
		closeRaw(int(fd))
		return -1, e
	}
	return int(fd), e
}
