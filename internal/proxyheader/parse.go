package proxyheader

import (
	"bytes"
	"encoding/binary"
	"net/netip"
)

var (
	sigV1 = []byte("PROXY")
	sigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// signature reports which header b starts with: 1 or 2 for a complete
// signature, 0 for none, or -1 if b is too short to tell (b is a proper
// prefix of a signature, or empty).
func signature(b []byte) int {
	switch {
	case bytes.HasPrefix(b, sigV1):
		return 1
	case bytes.HasPrefix(b, sigV2):
		return 2
	case bytes.HasPrefix(sigV1, b) || bytes.HasPrefix(sigV2, b):
		return -1
	}
	return 0
}

// Parse parses the PROXY header at the start of b into *h and returns its
// length. It returns ErrNeedMore while b is a proper prefix of a header
// that could still be valid, ErrMissing if b does not start with a
// signature, and an error wrapping ErrInvalid for a malformed header. On
// success h.TLVs aliases b.
func Parse(b []byte, h *Header) (n int, err error) {
	switch signature(b) {
	case 1:
		return parseV1(b, h)
	case 2:
		return parseV2(b, h)
	case -1:
		return 0, ErrNeedMore
	}
	return 0, ErrMissing
}

// parseV1 parses "PROXY TCP4 src dst sport dport\r\n" (spec section 2.1).
// Unlike go-proxyproto it waits for a line sent in pieces, as the spec
// recommends receivers do; the caller's deadline bounds the wait.
func parseV1(b []byte, h *Header) (int, error) {
	end := bytes.IndexByte(b[:min(len(b), MaxV1Len)], '\n')
	if end < 0 {
		if len(b) >= MaxV1Len {
			return 0, errV1Long
		}
		return 0, ErrNeedMore
	}
	n := end + 1
	if end == 0 || b[end-1] != '\r' {
		return 0, errV1CRLF
	}
	line := b[:end-1]
	*h = Header{Version: 1}
	var f [6][]byte
	nf := splitFields(line, &f)
	if !bytes.Equal(f[0], sigV1) || nf < 2 {
		return 0, errV1Proto
	}
	var want4 bool
	switch string(f[1]) {
	case "UNKNOWN":
		// The receiver ignores the rest of the line and uses the
		// connection's own addresses (spec section 2.1).
		h.Local = true
		return n, nil
	case "TCP4":
		want4 = true
	case "TCP6":
	default:
		return 0, errV1Proto
	}
	if nf != 6 {
		return 0, errV1Fields
	}
	src, ok1 := v1Addr(f[2], want4)
	dst, ok2 := v1Addr(f[3], want4)
	if !ok1 || !ok2 {
		return 0, errV1Addr
	}
	sp, ok1 := v1Port(f[4])
	dp, ok2 := v1Port(f[5])
	if !ok1 || !ok2 {
		return 0, errV1Port
	}
	h.Source = netip.AddrPortFrom(src, sp)
	h.Dest = netip.AddrPortFrom(dst, dp)
	return n, nil
}

// splitFields splits line at single spaces into f, returning how many
// fields there are (which may exceed len(f); the excess is not stored).
// Two spaces in a row make an empty field, which no valid line has.
func splitFields(line []byte, f *[6][]byte) int {
	n := 0
	for {
		i := bytes.IndexByte(line, ' ')
		if n < len(f) {
			if i < 0 {
				f[n] = line
			} else {
				f[n] = line[:i]
			}
		}
		n++
		if i < 0 {
			return n
		}
		line = line[i+1:]
	}
}

// v1Addr parses a v1 address of the family its protocol names. A TCP6
// line must carry IPv6 text (IPv4-mapped is IPv6), never bare IPv4, and
// no address has a zone (spec: anything not matching exactly is refused).
func v1Addr(b []byte, want4 bool) (netip.Addr, bool) {
	if len(b) > len("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255") {
		return netip.Addr{}, false
	}
	var buf [48]byte // ParseAddr of a stack copy does not allocate
	a, err := netip.ParseAddr(string(append(buf[:0], b...)))
	if err != nil || a.Zone() != "" || a.Is4() != want4 {
		return netip.Addr{}, false
	}
	return a, true
}

// v1Port parses a decimal port with no sign and no leading zero.
func v1Port(b []byte) (uint16, bool) {
	if len(b) == 0 || len(b) > 5 || len(b) > 1 && b[0] == '0' {
		return 0, false
	}
	var p uint32
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		p = p*10 + uint32(c-'0')
	}
	return uint16(p), p <= 0xffff
}

// v2 address families and transports (spec section 2.2, byte 14).
const (
	famUnspec = 0x0
	famInet   = 0x1
	famInet6  = 0x2
	famUnix   = 0x3

	protoStream = 0x1
	protoDgram  = 0x2

	cmdLocal = 0x20
	cmdProxy = 0x21
)

// addrLen is the size of each family's address block.
var addrLen = [...]int{famUnspec: 0, famInet: 12, famInet6: 36, famUnix: 216}

// parseV2 parses a binary header (spec section 2.2).
func parseV2(b []byte, h *Header) (int, error) {
	if len(b) < v2Fixed {
		return 0, ErrNeedMore
	}
	cmd, fam := b[12], b[13]
	if cmd != cmdLocal && cmd != cmdProxy {
		return 0, errV2Version
	}
	family, proto := int(fam>>4), fam&0xf
	// Only the combinations the spec lists; others "must be rejected".
	if fam != 0 && (family > famUnix || family == famUnspec || proto == 0 || proto > protoDgram) {
		return 0, errV2Family
	}
	if fam == 0 && cmd == cmdProxy {
		// The spec lets a receiver refuse this; go-proxyproto and so
		// every peer using it do.
		return 0, errV2Unspec
	}
	length := int(binary.BigEndian.Uint16(b[14:16]))
	if length > maxV2Payload {
		return 0, errV2Length
	}
	n := v2Fixed + length
	if len(b) < n {
		return 0, ErrNeedMore
	}
	payload := b[v2Fixed:n]
	*h = Header{Version: 2, Local: cmd == cmdLocal, Datagram: proto == protoDgram}
	block := addrLen[family]
	if len(payload) < block {
		if !h.Local {
			return 0, errV2Short
		}
		// A LOCAL header's addresses are ignored, so a short block is
		// skipped whole rather than refused (spec: "must not assume
		// zero is presented for LOCAL connections").
		block = len(payload)
	}
	if !h.Local {
		h.Source, h.Dest = v2Addrs(family, payload)
	}
	tlvs := payload[block:]
	if err := checkTLVs(b[:n], len(b[:n])-len(tlvs)); err != nil {
		return 0, err
	}
	if len(tlvs) > 0 {
		h.TLVs = tlvs
	}
	return n, nil
}

// v2Addrs reads the addresses of an IP family's block; AF_UNIX paths mean
// nothing to an IP balancer and give zero addresses.
func v2Addrs(family int, p []byte) (src, dst netip.AddrPort) {
	switch family {
	case famInet:
		s, d := netip.AddrFrom4([4]byte(p[0:4])), netip.AddrFrom4([4]byte(p[4:8]))
		return netip.AddrPortFrom(s, binary.BigEndian.Uint16(p[8:])), netip.AddrPortFrom(d, binary.BigEndian.Uint16(p[10:]))
	case famInet6:
		s, d := netip.AddrFrom16([16]byte(p[0:16])), netip.AddrFrom16([16]byte(p[16:32]))
		return netip.AddrPortFrom(s, binary.BigEndian.Uint16(p[32:])), netip.AddrPortFrom(d, binary.BigEndian.Uint16(p[34:]))
	}
	return netip.AddrPort{}, netip.AddrPort{}
}
