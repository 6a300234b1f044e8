package main

import (
	"encoding/hex"
	"errors"
	"math/rand/v2"

	"sluice/config"
	"sluice/internal/access"
	"sluice/internal/proxyheader"
	"sluice/l4"
	"sluice/l4/udp"
)

// This file adapts the client-identity packages (proxyheader, access) to
// the hooks of l4.Server: a listener's PROXY headers in, its allow/deny
// lists and per-client limits, and its pool's PROXY headers out.

// tcpHooks sets the client-identity hooks of srv from its listener's and
// pool's configuration; a listener that uses none keeps all hooks nil and
// so l4's plain fast path.
func tcpHooks(srv *l4.Server, lc config.Listener, pc *config.Pool) {
	if lc.ProxyProtocol != 0 {
		srv.Preamble = &proxyIn{policy: proxyheader.Policy{
			Accept:  lc.ProxyProtocol,
			Trusted: access.NewSet(lc.ProxyProtocolFrom),
		}}
		srv.PreambleTimeout = lc.ProxyProtocolTimeout
	}
	acl := access.NewACL(lc.Allow, lc.Deny)
	limits := access.NewLimiter(access.Limits{MaxConns: lc.MaxConnectionsPerClient, Rate: lc.NewConnectionsPerClient})
	if acl != nil || limits != nil {
		srv.Admit = &admitter{acl: acl, limits: limits}
	}
	if pc != nil && pc.SendProxy != 0 {
		srv.BackendPreamble = proxyOut{version: pc.SendProxy}
	}
}

// proxyIn reads PROXY headers for an l4.Server.
type proxyIn struct {
	policy proxyheader.Policy
}

var _ l4.PreambleParser = (*proxyIn)(nil)

// ParsePreamble implements l4.PreambleParser: from a trusted sender it
// consumes the header and takes its client as the connection's (a LOCAL
// header keeps the socket's); from anyone else it consumes nothing and
// refuses a header. Asked with no bytes, it answers ErrNeedMore for a
// trusted sender (wait for its header) and nil for anyone else, whose
// connection l4 then makes at once and whose first bytes it checks.
func (p *proxyIn) ParsePreamble(peeked []byte, c *l4.Client) (int, error) {
	var h proxyheader.Header
	n, err := p.policy.Read(c.Addr.Addr(), peeked, &h)
	switch {
	case errors.Is(err, proxyheader.ErrNeedMore):
		return 0, l4.ErrNeedMore
	case err != nil:
		return 0, err
	}
	if h.Addressed() {
		c.Via, c.Addr, c.Local = c.Addr, h.Source, h.Dest
	}
	if len(h.TLVs) > 0 {
		// They alias the loop's peek buffer, which the next
		// connection overwrites.
		c.TLVs = append([]byte(nil), h.TLVs...)
		if id, ok := proxyheader.TLV(c.TLVs, proxyheader.TypeUniqueID); ok {
			c.UniqueID = id // for the log line
		}
	}
	return n, nil
}

// admitter applies a listener's allow/deny lists and per-client limits.
type admitter struct {
	acl    *access.ACL
	limits *access.Limiter
}

var _ l4.Admitter = (*admitter)(nil)

var errDenied = errors.New("client address not allowed by the listener's allow/deny lists")

// Admit implements l4.Admitter.
func (a *admitter) Admit(c *l4.Client) error {
	ip := c.Addr.Addr()
	if !a.acl.Allowed(ip) {
		return &l4.RefusedError{End: l4.EndDenied, Err: errDenied}
	}
	if err := a.limits.Acquire(ip); err != nil {
		return &l4.RefusedError{End: l4.EndClientLimit, Err: err}
	}
	return nil
}

// Done implements l4.Admitter.
func (a *admitter) Done(c *l4.Client) { a.limits.Release(c.Addr.Addr()) }

// proxyOut writes a pool's PROXY header to each backend.
type proxyOut struct {
	version proxyheader.Versions
}

var _ l4.BackendPreamble = proxyOut{}

// AppendBackendPreamble implements l4.BackendPreamble. A v2 header carries
// on the TLVs received from the tier in front (all but its checksum and
// padding) and a unique ID for the connection, the one received if any.
func (o proxyOut) AppendBackendPreamble(dst []byte, c *l4.Client) []byte {
	if o.version == proxyheader.V1 {
		return proxyheader.AppendV1(dst, c.Addr, c.Local)
	}
	var buf [256]byte
	tlvs := proxyheader.AppendForwardTLVs(buf[:0], c.TLVs)
	if _, ok := proxyheader.TLV(tlvs, proxyheader.TypeUniqueID); !ok {
		tlvs = appendUniqueID(tlvs)
	}
	return proxyheader.AppendV2(dst, &proxyheader.Header{Source: c.Addr, Dest: c.Local, TLVs: tlvs})
}

// appendUniqueID appends a unique-ID TLV: 128 random bits in hex, drawn
// from math/rand/v2's per-thread generator, so making one shares no state
// between connections.
func appendUniqueID(tlvs []byte) []byte {
	var raw [16]byte
	for i := range 2 {
		u := rand.Uint64()
		for j := range 8 {
			raw[i*8+j] = byte(u >> (8 * j))
		}
	}
	var id [32]byte
	hex.Encode(id[:], raw[:])
	return proxyheader.AppendTLV(tlvs, proxyheader.TypeUniqueID, id[:])
}

// udpHooks sets the client-identity hooks of a UDP server, as tcpHooks
// does for TCP: PROXY v2 headers stripped from each datagram, allow/deny
// lists and a rate of new flows per client, and a v2 header in front of
// each datagram to the backend.
func udpHooks(srv *udp.Server, lc config.Listener, pc *config.Pool) {
	if lc.ProxyProtocol != 0 {
		srv.Preamble = &datagramIn{policy: proxyheader.Policy{
			Accept:  lc.ProxyProtocol,
			Trusted: access.NewSet(lc.ProxyProtocolFrom),
		}}
	}
	acl := access.NewACL(lc.Allow, lc.Deny)
	limits := access.NewLimiter(access.Limits{Rate: lc.NewConnectionsPerClient})
	if acl != nil || limits != nil {
		srv.Admit = &flowAdmitter{acl: acl, limits: limits}
	}
	if pc != nil && pc.SendProxy == proxyheader.V2 { // config allows no v1 for UDP
		srv.BackendPreamble = datagramOut{}
	}
}

// datagramIn strips PROXY v2 headers for a udp.Server.
type datagramIn struct {
	policy proxyheader.Policy
}

var _ udp.Preamble = (*datagramIn)(nil)

// StripDatagram implements udp.Preamble, allocating nothing.
func (p *datagramIn) StripDatagram(d []byte, c *udp.Client) (int, error) {
	var h proxyheader.Header
	payload, err := p.policy.Datagram(c.Addr.Addr(), d, &h)
	if err != nil {
		return 0, err
	}
	if h.Addressed() {
		c.Addr, c.Local = h.Source, h.Dest
	}
	return len(d) - len(payload), nil
}

// flowAdmitter applies a UDP listener's allow/deny lists and its rate of
// new flows per client. A flow holds nothing in the client table (Allow,
// not Acquire): a UDP source can be spoofed, and the table must stay free
// for the next one.
type flowAdmitter struct {
	acl    *access.ACL
	limits *access.Limiter
}

var _ udp.Admitter = (*flowAdmitter)(nil)

// AdmitFlow implements udp.Admitter.
func (a *flowAdmitter) AdmitFlow(c *udp.Client) error {
	ip := c.Addr.Addr()
	if !a.acl.Allowed(ip) {
		return errDenied
	}
	return a.limits.Allow(ip)
}

// datagramOut puts a PROXY v2 header (DGRAM) in front of each datagram to
// a backend.
type datagramOut struct{}

var _ udp.BackendPreamble = datagramOut{}

// AppendBackendPreamble implements udp.BackendPreamble.
func (datagramOut) AppendBackendPreamble(dst []byte, c *udp.Client) []byte {
	return proxyheader.AppendV2(dst, &proxyheader.Header{Datagram: true, Source: c.Addr, Dest: c.Local})
}
