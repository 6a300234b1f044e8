package maglev

import (
	"encoding/binary"
	"net/netip"
)

// FNV-1a 64 parameters (http://www.isthe.com/chongo/tech/comp/fnv/).
const (
	fnvBasis = 0xcbf29ce484222325
	fnvPrime = 0x100000001b3
)

// hashID hashes a backend id for the offset or skip of its permutation:
// FNV-1a 64 over the salt's 8 bytes then the id, then a finalizer. FNV is
// written out rather than taken from hash/fnv so that it cannot allocate
// and is plainly fixed; hash/maphash would differ on every run. FNV-1a's
// low bits mix poorly for ids that differ only in their last byte
// ("10.0.0.1:80", "10.0.0.2:80"), and offset and skip are taken modulo m,
// hence the finalizer.
func hashID(id string, salt uint64) uint64 {
	h := uint64(fnvBasis)
	for i := range 8 {
		h ^= salt >> (8 * i) & 0xff
		h *= fnvPrime
	}
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= fnvPrime
	}
	return mix64(h)
}

// HashAddr hashes a client address for Lookup: its IP (as 16 bytes, so an
// IPv4 address and its IPv4-mapped IPv6 form hash alike, as a dual-stack
// listener reports them either way; the zone is ignored) and, when
// withPort, its port. It is deterministic across machines and runs, does
// not allocate, and every input bit affects every output bit.
func HashAddr(a netip.AddrPort, withPort bool) uint64 {
	ip := a.Addr().As16()
	h := mix64(binary.BigEndian.Uint64(ip[:8]) ^ addrSalt)
	h = mix64(h ^ binary.BigEndian.Uint64(ip[8:]))
	if withPort {
		h = mix64(h ^ uint64(a.Port()))
	}
	return h
}

// mix64 is splitmix64's finalizer (Stafford's variant 13): a bijection on
// uint64 with full avalanche.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
