package l4

import (
	"errors"
	"net/netip"
)

// Client is who a connection is from, as the hooks of a Server see it.
type Client struct {
	// Addr is the real client: the socket's peer, or the client a
	// preamble (a PROXY header) named. Backends are picked for it and
	// the log line names it.
	Addr netip.AddrPort
	// Via is the socket's peer when a preamble named another client;
	// zero otherwise. The log line adds it as via=.
	Via netip.AddrPort
	// Local is the address the client connected to, for PROXY headers
	// sent onward: the one a preamble named, or else the socket's. The
	// socket's costs a getsockname, so it is looked up only for a
	// BackendPreamble, just before it is called; other hooks see only
	// what a preamble set.
	Local netip.AddrPort
	// TLVs are the raw PROXY v2 TLVs received, if any (nil: none).
	TLVs []byte
	// UniqueID is an ID a preamble carried for the connection (a PROXY
	// v2 unique ID, TLV 0x05), if any: the log line adds it as
	// unique_id=, escaped and cut to 128 bytes.
	UniqueID []byte
	// Pool, if a PreambleParser sets it, picks this connection's backend
	// instead of the Server's Pool: routing by what the client sent
	// first, such as the server name of a TLS ClientHello.
	Pool Picker
	// ServerName is a TLS server name a PreambleParser read, logged as
	// sni=; "" for none.
	ServerName string
}

// A PreambleParser reads what a client sends before its backend is chosen,
// such as a PROXY protocol header.
//
// ParsePreamble is first called with no bytes, as the client is accepted,
// to ask whether it sends a preamble at all. ErrNeedMore (or any other
// error) waits for it as described below. (0, nil) says the client sends
// none, as one not trusted to send a PROXY header: the connection goes to
// a backend at once, so that a server that speaks first (MySQL, SMTP) is
// not held up until the preamble timeout. The client's first bytes, as
// the first read of its direction finds them, are then shown to
// ParsePreamble once before they are sent on: an error other than
// ErrNeedMore (too few bytes to tell passes) refuses the connection with
// a reset, logged as end=bad_preamble, and n is ignored.
type PreambleParser interface {
	// ParsePreamble is given the bytes received so far, peeked
	// (MSG_PEEK) and not yet consumed, and the client as the socket sees
	// it. It returns the preamble's length n, which is consumed before
	// proxying (the bytes after it stay in the socket, for splice), and
	// updates c; or ErrNeedMore to wait for more bytes, up to
	// Server.PreambleTimeout. Any other error refuses the connection
	// with a reset, logged as end=bad_preamble with the error.
	ParsePreamble(peeked []byte, c *Client) (n int, err error)
}

// ErrNeedMore is returned by a PreambleParser whose preamble is not
// complete in the bytes it was given.
var ErrNeedMore = errors.New("l4: preamble needs more bytes")

// An Admitter decides whether a client may be served: allow and deny
// lists, per-client limits.
type Admitter interface {
	// Admit is called after the preamble, before a backend is chosen. A
	// non-nil error refuses the connection with a reset, logged as
	// end=denied, or as the End of a *RefusedError in its chain.
	Admit(c *Client) error
	// Done is called once when an admitted connection ends.
	Done(c *Client)
}

// A BackendPreamble is written to the backend after connecting, before any
// byte of the client's (a PROXY header).
type BackendPreamble interface {
	// AppendBackendPreamble appends the preamble for c to dst. It may
	// return at most 64 KiB.
	AppendBackendPreamble(dst []byte, c *Client) []byte
}

// RefusedError is an error an Admitter returns to say which End to log
// (EndDenied, EndClientLimit).
type RefusedError struct {
	End End   // logged as end=; EndNone means EndDenied
	Err error // why, logged as error=; may be nil
}

// Error returns the wrapped error's text, or says which End refused.
func (e *RefusedError) Error() string {
	if e.Err == nil {
		return "l4: refused: " + e.End.String()
	}
	return e.Err.Error()
}

// Unwrap returns the wrapped error, for errors.Is and errors.As.
func (e *RefusedError) Unwrap() error { return e.Err }

// refusal returns the End logged for an Admitter's error.
func refusal(err error) End {
	if re, ok := errors.AsType[*RefusedError](err); ok && re.End != EndNone {
		return re.End
	}
	return EndDenied
}
