package l4

import (
	"net"
	"time"
)

// DefaultHandshakeTimeout bounds a Terminator's handshake when
// Server.HandshakeTimeout is zero.
const DefaultHandshakeTimeout = 10 * time.Second

// A Terminator ends a protocol layer at the proxy: TLS termination, or a
// database's own negotiation followed by TLS. A Server with one runs each
// connection on goroutines (TLS cannot be spliced: its bytes must be
// decrypted in user space), sharing the Server's slots, pool, Admitter,
// log line and drain with the connections its event loops carry.
type Terminator interface {
	// Terminate runs on the connection's goroutine with a deadline of
	// Server.HandshakeTimeout set on c. It returns the stream to proxy
	// (a *tls.Conn over c, or c itself), and bytes already read from
	// the client that go to the backend first (nil: none). It may set
	// cl.ServerName (logged as sni=). An error refuses the client: c is
	// closed, logged as end=handshake_failed.
	Terminate(c *net.TCPConn, cl *Client) (stream net.Conn, first []byte, err error)
}

// A BackendStarter speaks to a backend before the client's bytes: a TLS
// client handshake (re-encryption), or a database's request for TLS
// followed by one.
type BackendStarter interface {
	// StartBackend runs once the backend is connected, with a deadline
	// of Server.ConnectTimeout set on c, and returns the stream to
	// proxy to. An error counts against the backend (passive checks)
	// and the next backend is tried, as after a failed connect.
	StartBackend(c *net.TCPConn, cl *Client) (net.Conn, error)
}

// A Negotiator is a Terminator that also speaks with the client once the
// backend is connected and started: protocols whose server speaks first.
// A MySQL client asks for TLS only after the server's greeting, so the
// greeting must be read from a backend (by the BackendStarter) before the
// client's TLS handshake can start.
type Negotiator interface {
	Terminator
	// Negotiate runs after Terminate, the backend's start and the
	// BackendPreamble, with a deadline of Server.HandshakeTimeout set on
	// both sockets (cleared after it returns). client and backend are
	// the streams Terminate and StartBackend returned; it returns those
	// to proxy from then on. An error ends the connection: logged as
	// end=backend_reset (counted against the backend) if it is a
	// *BackendError, else as end=handshake_failed.
	Negotiate(client, backend net.Conn, cl *Client) (net.Conn, net.Conn, error)
}

// BackendError is an error a Negotiator returns when the backend failed
// (closed, reset, answered what its protocol does not allow), as opposed
// to the client.
type BackendError struct{ Err error }

// Error returns the wrapped error's text.
func (e *BackendError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error, for errors.Is and errors.As.
func (e *BackendError) Unwrap() error { return e.Err }

func (s *Server) handshakeTimeout() time.Duration {
	return orDefault(s.HandshakeTimeout, DefaultHandshakeTimeout)
}
