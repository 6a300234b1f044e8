package udp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"sluice/internal/pool"
)

// flowKey identifies a flow: the client's address and port, and on a
// listener bound to every address, the address it sent to (so replies to
// two of the host's addresses stay apart). IPv4 addresses are stored
// v4-mapped.
type flowKey struct {
	client [16]byte
	local  [16]byte
	zone   uint32 // IPv6 scope of a link-local client
	port   uint16
	// With a Preamble, the sender when a header named another client
	// (client, port): one flow per client a proxy sends for.
	via     [16]byte
	viaPort uint16
}

// clientAddr returns the client's address and port for Pick and the log.
func (k *flowKey) clientAddr() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(k.client).Unmap(), k.port)
}

// viaAddr returns the sender when a header named the client, else zero.
func (k *flowKey) viaAddr() netip.AddrPort {
	if k.viaPort == 0 && k.via == ([16]byte{}) {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(netip.AddrFrom16(k.via).Unmap(), k.viaPort)
}

// session is one flow's state: its backend, its connected socket to that
// backend, and what a reply needs. It is owned by one loop.
type session struct {
	key  flowKey
	be   *pool.Backend
	bc   *BackendCounters // be's counters (nil without Counters)
	fd   int              // socket connected to be
	pre  []byte           // BackendPreamble, sent before each datagram
	slot int32            // index in loop.slots, carried by its epoll events
	gen  uint32           // the slot's generation when this session took it

	// name is the client's address as received, the destination of
	// replies; oob, if ooblen > 0, holds the IP_PKTINFO or IPV6_PKTINFO
	// that makes them leave from the address the client sent to.
	name    unix.RawSockaddrInet6
	namelen uint32
	oob     [oobSize / 8]uint64
	ooblen  int
	noGSO   bool // a route refused segmentation offload (see gsoRun)

	start, last time.Duration // on the loop's clock
	recheck     time.Duration // when gone may next ask the pool for be's state
	replies     int
	dgIn, dgOut int64 // datagrams from and to the client
	in, out     int64 // bytes from and to the client

	prev, next *session // in loop.idle, least recently active first
}

// source returns the control message that sets the replies' source
// address, or nil.
func (s *session) source() []byte {
	if s.ooblen == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s.oob[0])), s.ooblen)
}

// parseKey reads datagram i's flow key from its sender address and, if the
// socket reports it, its destination. It does not allocate.
func parseKey(b *batch, i int, pktinfo bool) (k flowKey, ifindex uint32, ok bool) {
	h := &b.hs[i].hdr
	sa := &b.names[i]
	switch {
	case sa.Family == unix.AF_INET6 && h.Namelen >= unix.SizeofSockaddrInet6:
		k.client, k.zone = sa.Addr, sa.Scope_id
	case sa.Family == unix.AF_INET && h.Namelen >= unix.SizeofSockaddrInet4:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		k.client = netip.AddrFrom4(sa4.Addr).As16()
	default:
		return k, 0, false
	}
	// Port is in network byte order in memory.
	k.port = binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	if pktinfo {
		k.local, ifindex = destination(b.oob(i)[:h.Controllen])
	}
	return k, ifindex, true
}

// destination finds the IP_PKTINFO or IPV6_PKTINFO control message in oob
// and returns the address the datagram was sent to (v4-mapped for IPv4) and
// the interface it came in on. It returns zeros if there is none.
func destination(oob []byte) (addr [16]byte, ifindex uint32) {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		if int(h.Len) < unix.SizeofCmsghdr || int(h.Len) > len(oob) {
			break
		}
		data := oob[unix.CmsgLen(0):h.Len]
		switch {
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0]))
			// Spec_dst is the local address a reply should come
			// from; for unicast it is the destination itself.
			return netip.AddrFrom4(pi.Spec_dst).As16(), uint32(pi.Ifindex)
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0]))
			return pi.Addr, pi.Ifindex
		}
		next := unix.CmsgSpace(int(h.Len) - unix.CmsgLen(0))
		if next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	return addr, 0
}

// setSource makes the session's replies leave from local: an IP_PKTINFO
// control message on an IPv4 socket, IPV6_PKTINFO on an IPv6 one (Linux
// takes a v4-mapped address there for IPv4 clients of a dual-stack socket).
// The interface is left to routing unless local is IPv6 link-local, which
// only means something with one.
func (s *session) setSource(family int, local [16]byte, ifindex uint32) {
	if local == ([16]byte{}) {
		return
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(&s.oob[0])), oobSize)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	data := unsafe.Pointer(&b[unix.CmsgLen(0)])
	if family == unix.AF_INET {
		h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
		pi := (*unix.Inet4Pktinfo)(data)
		*pi = unix.Inet4Pktinfo{Spec_dst: netip.AddrFrom16(local).Unmap().As4()}
		s.ooblen = unix.CmsgSpace(unix.SizeofInet4Pktinfo)
		return
	}
	h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
	pi := (*unix.Inet6Pktinfo)(data)
	*pi = unix.Inet6Pktinfo{Addr: local}
	if netip.AddrFrom16(local).IsLinkLocalUnicast() {
		pi.Ifindex = ifindex
	}
	s.ooblen = unix.CmsgSpace(unix.SizeofInet6Pktinfo)
}

// dialBackend opens a non-blocking UDP socket connected to addr. Connected,
// it receives only addr's datagrams, and the kernel picks a free local port
// for it: each session holds one fd and one port.
func dialBackend(addr netip.AddrPort) (int, error) {
	var sa unix.Sockaddr
	family := unix.AF_INET
	if a := addr.Addr(); a.Is4() {
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: a.As4()}
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: a.As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening a socket to backend %s: %w", addr, os.NewSyscallError("socket", err))
	}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		// Out of local ports, connect fails with EAGAIN.
		return -1, fmt.Errorf("connecting to backend %s: %w", addr, os.NewSyscallError("connect", err))
	}
	return fd, nil
}

// idleList orders a loop's sessions by their last datagram, least recent
// first. Every session of a server has the same timeout, so the expired
// ones are always at the front: expiry looks at those and no others.
type idleList struct {
	front, back *session
	n           int
}

// touch marks s active at now, moving it to the back.
func (l *idleList) touch(s *session, now time.Duration) {
	s.last = now
	if l.back == s {
		return
	}
	l.remove(s)
	l.pushBack(s)
}

func (l *idleList) pushBack(s *session) {
	s.prev, s.next = l.back, nil
	if l.back != nil {
		l.back.next = s
	} else {
		l.front = s
	}
	l.back = s
	l.n++
}

// insert puts s in its place by s.last, from the back: a session adopted
// from another process (see Import) may have been idle for a while.
func (l *idleList) insert(s *session) {
	p := l.back
	for p != nil && p.last > s.last {
		p = p.prev
	}
	if p == nil {
		s.prev, s.next = nil, l.front
		if l.front != nil {
			l.front.prev = s
		} else {
			l.back = s
		}
		l.front = s
	} else {
		s.prev, s.next = p, p.next
		if p.next != nil {
			p.next.prev = s
		} else {
			l.back = s
		}
		p.next = s
	}
	l.n++
}

// remove takes s out of the list; s must be in it.
func (l *idleList) remove(s *session) {
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		l.front = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	} else {
		l.back = s.prev
	}
	s.prev, s.next = nil, nil
	l.n--
}
