package proxyheader

import (
	"fmt"
	"net/netip"
)

// Versions is the set of header versions a listener accepts. The zero
// value accepts none: the listener takes no PROXY headers.
type Versions uint8

const (
	// V1 accepts the text header.
	V1 Versions = 1 << iota
	// V2 accepts the binary header.
	V2
	// Any accepts both.
	Any = V1 | V2
)

var versionNames = map[Versions]string{V1: "v1", V2: "v2", Any: "any"}

// String returns the name used in the configuration file.
func (v Versions) String() string {
	if s, ok := versionNames[v]; ok {
		return s
	}
	return fmt.Sprintf("Versions(%d)", uint8(v))
}

// UnmarshalText implements encoding.TextUnmarshaler, accepting "v1", "v2"
// and "any".
func (v *Versions) UnmarshalText(text []byte) error {
	for k, s := range versionNames {
		if string(text) == s {
			*v = k
			return nil
		}
	}
	return fmt.Errorf("unknown PROXY protocol version %q: want \"v1\", \"v2\" or \"any\"", text)
}

// accepts reports whether version n (1 or 2) is in v.
func (v Versions) accepts(n int) bool { return v&(1<<(n-1)) != 0 }

// Trusted is the set of senders allowed to send PROXY headers.
type Trusted interface {
	// Contains reports whether addr is in the set.
	Contains(addr netip.Addr) bool
}

// Policy says who must and who must not send a PROXY header. The zero
// value accepts no headers and refuses none: a Policy with Accept zero
// should not be consulted at all.
type Policy struct {
	// Accept is the versions a trusted sender may use.
	Accept Versions
	// Trusted are the senders that must send a header; every other
	// sender must not. Nil trusts nobody.
	Trusted Trusted
}

// trusts reports whether peer is a trusted sender.
func (p *Policy) trusts(peer netip.Addr) bool {
	return p.Trusted != nil && p.Trusted.Contains(peer.Unmap())
}

// Read decides on a stream's first bytes b from peer. From a trusted peer
// it parses the header into *h and returns its length, to be consumed
// before anything is forwarded; ErrNeedMore asks for more bytes, and
// ErrMissing, ErrInvalid or a version not in Accept refuse the
// connection. From any other peer it returns 0 and leaves *h alone, unless
// b starts with a PROXY signature (ErrUntrusted: refuse) or with a part of
// one (ErrNeedMore). An untrusted peer that has sent nothing yet (b empty)
// is let through, so that a protocol whose server speaks first (MySQL,
// SMTP) is not held up: the caller checks its first bytes later by
// calling Read again with them.
func (p *Policy) Read(peer netip.Addr, b []byte, h *Header) (int, error) {
	if !p.trusts(peer) {
		if len(b) == 0 {
			return 0, nil
		}
		switch signature(b) {
		case 0:
			return 0, nil
		case -1:
			return 0, ErrNeedMore
		}
		return 0, ErrUntrusted
	}
	var got Header
	n, err := Parse(b, &got)
	if err != nil {
		return 0, err
	}
	if !p.Accept.accepts(got.Version) {
		return 0, errVersion
	}
	*h = got
	return n, nil
}

// Datagram strips the v2 header from a datagram sent by peer and returns
// the payload after it, aliasing d. A trusted peer's datagram must start
// with a complete v2 header (each datagram carries its own: spec section
// 2); any other peer's must not start with one, and comes back whole. It
// never allocates, so a flood of bad datagrams costs no garbage.
func (p *Policy) Datagram(peer netip.Addr, d []byte, h *Header) (payload []byte, err error) {
	if !p.trusts(peer) {
		if signature(d) == 2 {
			return nil, ErrUntrusted
		}
		return d, nil
	}
	var got Header
	n, err := Parse(d, &got)
	switch {
	case err == ErrNeedMore:
		return nil, errTruncated
	case err != nil:
		return nil, err
	case got.Version != 2:
		return nil, errDatagramV1
	}
	*h = got
	return d[n:], nil
}
