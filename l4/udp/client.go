package udp

import "net/netip"

// Client is who a flow is from, as the hooks of a Server see it.
type Client struct {
	// Addr is the real client: the datagram's sender, or the client a
	// PROXY header in front of the datagram named. Backends are picked
	// for it and the log line names it.
	Addr netip.AddrPort
	// Via is the sender when a header named another client; zero
	// otherwise. Replies always go to the sender. The log line adds it
	// as via=.
	Via netip.AddrPort
	// Local is the address the client sent to, for PROXY headers sent
	// onward: the header's when it names one, else the listener's.
	Local netip.AddrPort
}

// A Preamble takes off what a proxy in front puts before each datagram (a
// PROXY v2 header: with UDP every datagram carries its own).
type Preamble interface {
	// StripDatagram is given a datagram and its Client as the socket
	// sees it (Addr the sender, Local the listener's address). It
	// returns how many leading bytes to take off, after updating c if
	// they named another client; or an error to drop the datagram
	// (Stats.DroppedPreamble). It is called for every datagram and must
	// not allocate, nor keep d.
	StripDatagram(d []byte, c *Client) (n int, err error)
}

// An Admitter decides whether a new flow's client may have a session:
// allow and deny lists, a rate of new flows per client.
type Admitter interface {
	// AdmitFlow is called before a new flow's backend is picked; an
	// error drops its datagram (Stats.DroppedRefused).
	AdmitFlow(c *Client) error
}

// A BackendPreamble goes in front of every datagram a session sends to its
// backend (a PROXY v2 header naming the client).
type BackendPreamble interface {
	// AppendBackendPreamble appends the preamble for c to dst, once per
	// session.
	AppendBackendPreamble(dst []byte, c *Client) []byte
}
