package udp

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Generic segmentation offload for UDP (UDP_SEGMENT, Linux 4.18): a run of
// datagrams of one size to one destination goes down the stack as one
// message with a segment size, and is cut into datagrams of that size at
// the end (by the device, or on loopback by the receiving socket). Each
// segment is a datagram of its own on the wire, so boundaries are kept,
// but the route lookup, the IP and UDP output path and the device's queue
// are passed once for the run instead of once per datagram: most of what
// a small datagram costs to send. A flow's datagrams read in one batch,
// and a backend's replies read in one, are such runs: one message each.
//
// A route may refuse it (a segment larger than the path's MTU, a device
// without checksum offload: EINVAL or EIO); the session then sends those
// datagrams and its later ones one by one.

const (
	// maxGSOBytes is the most a message cut into segments may carry: one
	// UDP datagram's payload over IPv4 (65535 less the IP and UDP
	// headers).
	maxGSOBytes = 65507
	// maxSegments is the most segments one message may be cut into:
	// the kernel's UDP_MAX_SEGMENTS, 64 on older kernels (newer ones
	// take 128).
	maxSegments = 64
	// gsoCtlSize holds a session's IP_PKTINFO or IPV6_PKTINFO control
	// message followed by UDP_SEGMENT's.
	gsoCtlSize = oobSize + 16
)

// gsoRun returns how many of hs, from the first, can go as one message cut
// into datagrams of hs[0]'s size: each of them of that size except the
// last, which may be shorter, and all within one datagram's maximum
// size. A result of 1 means hs[0] goes alone. The sizes are in the
// headers' n fields.
func gsoRun(hs []mmsghdr) int {
	seg := hs[0].n
	if seg == 0 {
		// An empty datagram cannot be a segment.
		return 1
	}
	total, k := seg, 1
	for k < len(hs) && k < maxSegments {
		n := hs[k].n
		if n == 0 || n > seg || total+n > maxGSOBytes {
			break
		}
		total += n
		k++
		if n < seg {
			break
		}
	}
	return k
}

// gsoRefused reports whether a send with UDP_SEGMENT failed because the
// route or kernel does not take segmentation, rather than for the
// datagrams themselves.
func gsoRefused(errno unix.Errno) bool {
	return errno == unix.EINVAL || errno == unix.EIO || errno == unix.ENOPROTOOPT || errno == unix.EOPNOTSUPP
}

// gsoCtl is the control buffer of one message sent with UDP_SEGMENT; uint64
// keeps the control messages aligned.
type gsoCtl [gsoCtlSize / 8]uint64

// set fills c with oob (a session's source address message, maybe empty)
// and then a UDP_SEGMENT message for seg-byte segments, and points h's
// control buffer at it.
func (c *gsoCtl) set(h *unix.Msghdr, oob []byte, seg uint32) {
	b := unsafe.Slice((*byte)(unsafe.Pointer(&c[0])), gsoCtlSize)
	n := copy(b, oob)
	cm := (*unix.Cmsghdr)(unsafe.Pointer(&b[n]))
	cm.Level, cm.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	cm.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&b[n+unix.CmsgLen(0)])) = uint16(seg)
	h.Control = &b[0]
	h.SetControllen(n + unix.CmsgSpace(2))
}
