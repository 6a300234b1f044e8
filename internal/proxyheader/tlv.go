package proxyheader

import (
	"encoding/binary"
	"hash/crc32"
)

// TLVType is a v2 TLV's type byte (spec section 2.2).
type TLVType byte

// TLV types sluice reads or writes; the spec lists the rest.
const (
	// TypeALPN is the application protocol the client negotiated, such
	// as "h2".
	TypeALPN TLVType = 0x01
	// TypeAuthority is the host name the client asked for (TLS SNI).
	TypeAuthority TLVType = 0x02
	// TypeCRC32C is a CRC32C checksum of the whole header.
	TypeCRC32C TLVType = 0x03
	// TypeNoop is padding.
	TypeNoop TLVType = 0x04
	// TypeUniqueID is an opaque connection ID of at most 128 bytes.
	TypeUniqueID TLVType = 0x05
	// TypeSSL holds the client's TLS details as sub-TLVs.
	TypeSSL TLVType = 0x20
	// TypeNetNS is the network namespace the connection came from.
	TypeNetNS TLVType = 0x30
)

// MaxUniqueIDLen is the longest unique ID the spec allows (section 2.2.5).
const MaxUniqueIDLen = 128

var (
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
	zeroCRC    [4]byte // what the checksum field counts as; a local escapes
)

// checkTLVs checks that the TLVs of header hdr, starting at offset off,
// are well formed and that a CRC32C among them matches: computed over the
// whole header with the checksum's 4 bytes taken as zero (section 2.2.3).
func checkTLVs(hdr []byte, off int) error {
	crcAt := -1
	for i := off; i < len(hdr); {
		if len(hdr)-i < 3 {
			return errTLV
		}
		t, n := TLVType(hdr[i]), int(binary.BigEndian.Uint16(hdr[i+1:]))
		if len(hdr)-i-3 < n {
			return errTLV
		}
		if t == TypeCRC32C {
			if n != 4 {
				return errCRCLen
			}
			crcAt = i + 3
		}
		i += 3 + n
	}
	if crcAt < 0 {
		return nil
	}
	sum := crc32.Update(0, castagnoli, hdr[:crcAt])
	sum = crc32.Update(sum, castagnoli, zeroCRC[:])
	sum = crc32.Update(sum, castagnoli, hdr[crcAt+4:])
	if sum != binary.BigEndian.Uint32(hdr[crcAt:]) {
		return errCRC
	}
	return nil
}

// TLV returns the value of the first TLV of type t in tlvs (a Header's
// TLVs, already checked by Parse), aliasing tlvs.
func TLV(tlvs []byte, t TLVType) (value []byte, ok bool) {
	for len(tlvs) >= 3 {
		n := int(binary.BigEndian.Uint16(tlvs[1:]))
		if len(tlvs)-3 < n {
			return nil, false
		}
		if TLVType(tlvs[0]) == t {
			return tlvs[3 : 3+n], true
		}
		tlvs = tlvs[3+n:]
	}
	return nil, false
}

// AppendTLV appends one TLV to b. A value longer than 65535 bytes cannot be
// encoded and is cut to that length; callers keep values far shorter, as a
// whole header is read with at most 4096 bytes of them.
func AppendTLV(b []byte, t TLVType, value []byte) []byte {
	value = value[:min(len(value), 0xffff)]
	b = append(b, byte(t), byte(len(value)>>8), byte(len(value)))
	return append(b, value...)
}

// AppendForwardTLVs appends the TLVs of a received header (as Parse
// checked them) that stay true when the header is rebuilt for the next hop:
// every one but CRC32C, whose checksum covered the old header, and NOOP
// padding.
func AppendForwardTLVs(b, tlvs []byte) []byte {
	for len(tlvs) >= 3 {
		n := int(binary.BigEndian.Uint16(tlvs[1:]))
		if len(tlvs)-3 < n {
			break
		}
		if t := TLVType(tlvs[0]); t != TypeCRC32C && t != TypeNoop {
			b = append(b, tlvs[:3+n]...)
		}
		tlvs = tlvs[3+n:]
	}
	return b
}
