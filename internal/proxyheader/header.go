// Package proxyheader reads and writes PROXY protocol headers (HAProxy's
// proxy-protocol.txt, versions 1 and 2) on byte slices, so a listener can
// peek a connection's first bytes, learn the real client, and consume
// exactly the header before splicing the raw sockets:
//
//	n, err := policy.Read(peer, peeked, &h) // ErrNeedMore: peek again
//	out = proxyheader.AppendV2(out[:0], &proxyheader.Header{Source: client, Dest: local})
//	payload, err := policy.Datagram(peer, datagram, &h) // UDP, no allocation
//
// Nothing here reads from or wraps a connection: the caller owns the socket
// and its deadline. Building headers and parsing v2 headers allocate
// nothing, which the UDP path needs for every datagram (a v1 line, TCP
// only, costs one small allocation per address). github.com/pires/go-proxyproto serves as
// the reference the fuzz tests hold both against.
package proxyheader

import (
	"errors"
	"net/netip"
)

// Header is one PROXY header, as parsed or to be built.
type Header struct {
	// Version is 1 or 2 for a parsed header; the builders ignore it.
	Version int
	// Local is set for a v2 LOCAL command or a v1 "UNKNOWN" line: the
	// sender opened the connection itself (a health check) and the
	// receiver must use the connection's own addresses.
	Local bool
	// Datagram is set when the v2 header says the original transport was
	// UDP (SOCK_DGRAM); v1 headers are always TCP.
	Datagram bool
	// Source and Dest are the original connection's client and server.
	// Both are valid, or both are zero: zero for a LOCAL header, an
	// UNSPEC or AF_UNIX family, where the connection's own addresses
	// stand.
	Source, Dest netip.AddrPort
	// TLVs are a v2 header's type-length-value records as sent (already
	// checked to be well formed, and their CRC32C if one is present); in
	// a parsed header they alias the parsed bytes.
	TLVs []byte
}

// Addressed reports whether the header carries the original client's
// address, which then replaces the connection's peer address.
func (h *Header) Addressed() bool { return h.Source.IsValid() }

// Sizes of headers, for callers that size buffers.
const (
	// MaxV1Len is the longest v1 line, CRLF included (spec section 2.1).
	MaxV1Len = 107
	// MaxV2Len is the longest v2 header accepted: the 16-byte fixed part
	// and 4096 bytes of addresses and TLVs, go-proxyproto's default cap,
	// which leaves room for a client certificate TLV.
	MaxV2Len = v2Fixed + maxV2Payload
	// MaxLen is the most bytes Read may ask to see before it decides.
	MaxLen = MaxV2Len

	v2Fixed      = 16
	maxV2Payload = 4096
)

// Errors Read, Parse and Datagram return; classify with errors.Is. Every
// malformed header gives an error that wraps ErrInvalid and names what is
// wrong. None of them allocates.
var (
	// ErrNeedMore means the bytes so far are a valid beginning: read more
	// and call again.
	ErrNeedMore = errors.New("proxyheader: incomplete header")
	// ErrMissing means a trusted sender's bytes do not start with a PROXY
	// header, which that sender must send.
	ErrMissing = errors.New("proxyheader: no PROXY header from a trusted sender")
	// ErrUntrusted means a sender outside the trusted ranges sent a PROXY
	// header: it may be trying to claim another client's address.
	ErrUntrusted = errors.New("proxyheader: PROXY header from an untrusted sender")
	// ErrInvalid is wrapped by every error about a malformed header.
	ErrInvalid = errors.New("proxyheader: invalid header")
)

// invalid is a malformed-header error: a constant message that matches
// ErrInvalid under errors.Is, so returning one allocates nothing.
type invalid string

func (e invalid) Error() string        { return "proxyheader: invalid header: " + string(e) }
func (e invalid) Is(target error) bool { return target == ErrInvalid }

// Each error is made once: a flood of bad datagrams must not allocate.
var (
	errV1Long     error = invalid("v1 line longer than 107 bytes")
	errV1CRLF     error = invalid("v1 line must end with CRLF")
	errV1Proto    error = invalid("v1 protocol must be TCP4, TCP6 or UNKNOWN")
	errV1Fields   error = invalid("v1 line must have 6 space-separated fields")
	errV1Addr     error = invalid("v1 address does not match its protocol")
	errV1Port     error = invalid("v1 port must be 0..65535 without leading zeros")
	errV2Version  error = invalid("v2 version and command byte must be 0x20 or 0x21")
	errV2Family   error = invalid("v2 address family and protocol byte is undefined")
	errV2Unspec   error = invalid("v2 PROXY command with an unspecified address family")
	errV2Length   error = invalid("v2 length exceeds 4096 bytes")
	errV2Short    error = invalid("v2 length too short for its address family")
	errTLV        error = invalid("v2 TLV runs past the end of the header")
	errCRC        error = invalid("v2 CRC32C checksum does not match")
	errCRCLen     error = invalid("v2 CRC32C TLV is not 4 bytes")
	errVersion    error = invalid("header version not accepted by this listener")
	errTruncated  error = invalid("datagram ends inside its v2 header")
	errDatagramV1 error = invalid("v1 header in a datagram: PROXY over UDP is v2 only")
)
