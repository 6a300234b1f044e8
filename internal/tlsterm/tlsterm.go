// Package tlsterm ends TLS for TCP listeners, and the negotiation some
// protocols put before it (PostgreSQL's SSLRequest), as l4.Terminator and
// l4.BackendStarter: l4 runs such connections on goroutines and copies the
// decrypted bytes.
//
//	srv.Terminate = tlsterm.TLS{Config: cfg}            // or &tlsterm.Postgres{...}
//	srv.BackendStart = tlsterm.BackendTLS{Config: cl}   // re-encrypt, if wanted
//
// MySQL, whose server speaks first, is a *MySQL set as both hooks.
package tlsterm

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"sluice/internal/acmecert"
	"sluice/l4"
)

// TLS terminates TLS on a client connection.
type TLS struct {
	// Config is the server configuration (certificates by SNI, ALPN,
	// versions, client certificates).
	Config *tls.Config
}

var _ l4.Terminator = TLS{}

// Terminate runs the TLS handshake and logs the server name asked for.
func (t TLS) Terminate(c *net.TCPConn, cl *l4.Client) (net.Conn, []byte, error) {
	tc, err := handshake(c, t.Config, cl)
	return tc, nil, err
}

// handshake runs a server handshake on c; the deadline is the caller's.
func handshake(c net.Conn, cfg *tls.Config, cl *l4.Client) (*tls.Conn, error) {
	tc := tls.Server(c, cfg)
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	cl.ServerName = tc.ConnectionState().ServerName
	if tc.ConnectionState().NegotiatedProtocol == acmecert.ALPNProto {
		// An ACME CA checking the listener's name: the handshake
		// was the answer, and there is nothing to proxy.
		return nil, acmecert.ErrValidation
	}
	return tc, nil
}

// Plain passes the client's bytes as they are: a listener without TLS in
// front of backends spoken to with TLS (BackendTLS).
type Plain struct{}

var _ l4.Terminator = Plain{}

// Terminate returns c itself.
func (Plain) Terminate(c *net.TCPConn, _ *l4.Client) (net.Conn, []byte, error) {
	return c, nil, nil
}

// BackendTLS speaks TLS to backends.
type BackendTLS struct {
	// Config is the client configuration (server name, roots, client
	// certificate, ALPN).
	Config *tls.Config
}

var _ l4.BackendStarter = BackendTLS{}

// StartBackend runs the client handshake. Without a ServerName the
// backend's certificate is verified against its IP address, and no SNI
// is sent.
func (b BackendTLS) StartBackend(c *net.TCPConn, _ *l4.Client) (net.Conn, error) {
	return clientHandshake(c, b.Config)
}

// clientHandshake runs a client handshake on c, a connection to a backend.
func clientHandshake(c net.Conn, cfg *tls.Config) (*tls.Conn, error) {
	if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
		cfg = cfg.Clone()
		cfg.ServerName = c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap().String()
	}
	tc := tls.Client(c, cfg)
	if err := tc.Handshake(); err != nil {
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	return tc, nil
}

// ErrPlaintextRefused is returned for a PostgreSQL or MySQL client that
// did not ask for TLS on a listener that requires it.
var ErrPlaintextRefused = errors.New("tlsterm: client did not ask for TLS, which the listener requires")

// ErrBackendRefusedTLS is returned when a PostgreSQL backend answers an
// SSLRequest with 'N', or a MySQL backend's greeting does not offer TLS.
var ErrBackendRefusedTLS = errors.New("tlsterm: backend refused TLS")
