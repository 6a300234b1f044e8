package udp

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Batches are sent and received with recvmmsg(2) and sendmmsg(2) called
// directly. x/net's ipv4/ipv6 ReadBatch makes the same call but allocates a
// *net.UDPAddr and its IP for every datagram it reads (measured: 2 allocs
// per datagram), and its WriteBatch needs a net.Conn in Go's poller, which
// the sessions' sockets are not (see loop).
const (
	// batchSize is how many datagrams one system call moves at most.
	batchSize = 32
	// bufSize holds the largest UDP payload (65507 bytes over IPv4,
	// 65527 over IPv6), so a datagram is never truncated. Only the pages
	// a datagram touches become resident.
	bufSize = 1 << 16
	// oobSize holds one IP_PKTINFO or IPV6_PKTINFO control message, the
	// only one the listening sockets ask for.
	oobSize = 64
)

// mmsghdr is struct mmsghdr. Go pads it to the C size on every
// architecture (8-byte aligned on 64-bit, none needed on 32-bit).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32 // bytes received or sent
}

// The calls below take the runtime's ordinary syscall path although they
// cannot block. RawSyscall, as l4's data path uses, was tried (issue 9):
// it saved CPU (3.2 µs per datagram's round trip against 4.3), but under
// load (8 flows of 64 datagrams in flight, 5 interleaved rounds) windows
// stalled for want of replies about 20 times as often (medians of 2,209
// per 400,000 datagrams against 97), for a reason not found yet. Until it
// is, they stay here.

// recvmmsg reads up to len(hs) datagrams from fd without blocking. A
// socket with nothing to read returns EAGAIN.
func recvmmsg(fd int, hs []mmsghdr) (int, syscall.Errno) {
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hs[0])),
		uintptr(len(hs)), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// sendmmsg sends the datagrams of hs on fd without blocking and returns
// how many were sent. It fails only if the first one could not be sent.
func sendmmsg(fd int, hs []mmsghdr) (int, syscall.Errno) {
	n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hs[0])),
		uintptr(len(hs)), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// batch is a set of message headers with their own buffers, allocated once
// per loop and reused for every system call.
type batch struct {
	hs    []mmsghdr
	iovs  []unix.Iovec
	bufs  []byte
	names []unix.RawSockaddrInet6 // big enough for either family
	oobs  []uint64                // uint64 keeps each control message aligned
	used  int                     // headers filled, for a batch being built
}

func newBatch() *batch {
	return &batch{
		hs:    make([]mmsghdr, batchSize),
		iovs:  make([]unix.Iovec, batchSize),
		bufs:  make([]byte, batchSize*bufSize),
		names: make([]unix.RawSockaddrInet6, batchSize),
		oobs:  make([]uint64, batchSize*oobSize/8),
	}
}

// buf returns datagram i's buffer, of full size.
func (b *batch) buf(i int) []byte { return b.bufs[i*bufSize : (i+1)*bufSize : (i+1)*bufSize] }

// data returns the n bytes received into datagram i.
func (b *batch) data(i int) []byte { return b.bufs[i*bufSize : i*bufSize+int(b.hs[i].n)] }

// oob returns datagram i's control buffer.
func (b *batch) oob(i int) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(&b.oobs[i*oobSize/8])), oobSize)
}

// forReceive points headers from..to at their full buffers, with the
// sender's address and control messages if asked for.
func (b *batch) forReceive(from, to int, name, oob bool) {
	for i := from; i < to; i++ {
		h := &b.hs[i].hdr
		b.iovs[i] = unix.Iovec{Base: &b.bufs[i*bufSize]}
		b.iovs[i].SetLen(bufSize)
		*h = unix.Msghdr{Iov: &b.iovs[i]}
		h.SetIovlen(1)
		if name {
			h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
			h.Namelen = unix.SizeofSockaddrInet6
		}
		if oob {
			h.Control = &b.oob(i)[0]
			h.SetControllen(oobSize)
		}
	}
}

// point points header k of b at pre, if not empty, then at the bytes of
// datagram i of src after its first off, for a send on a connected socket.
// Its iovecs are b's from at on, and it returns where the next header's
// start: the headers of a run take consecutive iovecs, so that the run
// can also go as one message (see gsoRun). The header's n is the
// datagram's size.
func (b *batch) point(k, at int, pre []byte, src *batch, i, off int) int {
	m := at
	if len(pre) > 0 {
		b.iovs[m] = unix.Iovec{Base: &pre[0]}
		b.iovs[m].SetLen(len(pre))
		m++
	}
	n := int(src.hs[i].n) - off
	if n > 0 {
		b.iovs[m] = unix.Iovec{Base: &src.bufs[i*bufSize+off]}
		b.iovs[m].SetLen(n)
		m++
	}
	b.hs[k].hdr = unix.Msghdr{Iov: &b.iovs[at]}
	b.hs[k].hdr.SetIovlen(m - at)
	b.hs[k].n = uint32(len(pre) + max(n, 0))
	return m
}

// reply turns received header i into a send of its n bytes to a session's
// client, from the session's local address if it has one.
func (b *batch) reply(i int, s *session) {
	h := &b.hs[i].hdr
	b.iovs[i].SetLen(int(b.hs[i].n))
	h.Name = (*byte)(unsafe.Pointer(&s.name))
	h.Namelen = s.namelen
	if s.ooblen > 0 {
		h.Control = (*byte)(unsafe.Pointer(&s.oob[0]))
		h.SetControllen(s.ooblen)
	}
}
