package proxyheader

import (
	"encoding/binary"
	"net/netip"
	"strconv"
)

// family picks the header family for a pair of addresses: IPv4 when both
// are IPv4 (or IPv4-mapped, as a dual-stack socket reports IPv4 peers),
// else IPv6 with IPv4 addresses mapped. ok is false unless both are valid.
func family(src, dst netip.AddrPort) (v4 bool, s, d netip.Addr, ok bool) {
	s, d = src.Addr().Unmap(), dst.Addr().Unmap()
	if !s.IsValid() || !d.IsValid() {
		return false, s, d, false
	}
	if s.Is4() && d.Is4() {
		return true, s, d, true
	}
	return false, netip.AddrFrom16(s.As16()), netip.AddrFrom16(d.As16()), true
}

// AppendV1 appends a v1 header for a TCP connection from src to dst, or
// "PROXY UNKNOWN\r\n" if either is invalid (what HAProxy sends for its own
// health checks). Zones are dropped: the v1 grammar has none.
func AppendV1(b []byte, src, dst netip.AddrPort) []byte {
	v4, s, d, ok := family(src, dst)
	if !ok {
		return append(b, "PROXY UNKNOWN\r\n"...)
	}
	b = append(b, "PROXY TCP6 "...)
	if v4 {
		b[len(b)-2] = '4'
	}
	b = s.WithZone("").AppendTo(b)
	b = append(b, ' ')
	b = d.WithZone("").AppendTo(b)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(src.Port()), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(dst.Port()), 10)
	return append(b, '\r', '\n')
}

// AppendV2 appends a v2 header for h to b: PROXY with h's addresses, or
// LOCAL with no addresses if h.Local is set or h has no valid address pair;
// STREAM unless h.Datagram; then h.TLVs as they are. TLVs are cut at what
// the length field can hold, which callers never approach.
func AppendV2(b []byte, h *Header) []byte {
	v4, s, d, ok := family(h.Source, h.Dest)
	ok = ok && !h.Local
	b = append(b, sigV2...)
	fam := byte(0)
	if ok {
		b = append(b, cmdProxy)
		fam = famInet6<<4 | protoStream
		if v4 {
			fam = famInet<<4 | protoStream
		}
		if h.Datagram {
			fam = fam&0xf0 | protoDgram
		}
	} else {
		b = append(b, cmdLocal)
	}
	tlvs := h.TLVs[:min(len(h.TLVs), 0xffff-36)]
	length := addrLen[fam>>4] + len(tlvs)
	b = append(b, fam, byte(length>>8), byte(length))
	if ok {
		if v4 {
			s4, d4 := s.As4(), d.As4()
			b = append(append(b, s4[:]...), d4[:]...)
		} else {
			s16, d16 := s.As16(), d.As16()
			b = append(append(b, s16[:]...), d16[:]...)
		}
		b = binary.BigEndian.AppendUint16(b, h.Source.Port())
		b = binary.BigEndian.AppendUint16(b, h.Dest.Port())
	}
	return append(b, tlvs...)
}

// V2Len is the length AppendV2 gives h, for a caller that reserves room
// in front of a datagram's payload.
func V2Len(h *Header) int {
	v4, _, _, ok := family(h.Source, h.Dest)
	n := v2Fixed + min(len(h.TLVs), 0xffff-36)
	switch {
	case !ok || h.Local:
	case v4:
		n += addrLen[famInet]
	default:
		n += addrLen[famInet6]
	}
	return n
}
