package tlsterm

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"

	"sluice/l4"
)

// PostgreSQL's negotiation codes, sent where a StartupMessage's protocol
// version goes (protocol.html, "Message Formats").
const (
	pgSSLRequest    = 80877103
	pgGSSENCRequest = 80877104
	pgCancelRequest = 80877102
	pgProtocol3     = 3 << 16
	// A StartupMessage is small: its parameters are names and options.
	// libpq refuses more than 10000 bytes; so does the server.
	pgMaxStartup = 10000
	// pgALPN is the protocol a TLS connection to PostgreSQL negotiates
	// (PostgreSQL 17); direct TLS must.
	pgALPN = "postgresql"
	// tlsHandshake is the first byte of a TLS record carrying a
	// ClientHello: how a direct TLS connection (PostgreSQL 17's
	// sslnegotiation=direct) starts.
	tlsHandshake = 0x16
)

// Postgres terminates TLS for PostgreSQL clients: it answers SSLRequest
// with 'S' and runs the handshake, answers GSSENCRequest with 'N' (the
// client may then ask for TLS), takes direct TLS (PostgreSQL 17), and
// passes a client that asks for neither in plain, or refuses it with an
// ErrorResponse when RequireTLS is set.
type Postgres struct {
	// Config is the server configuration. Its NextProtos should be
	// ["postgresql"], which direct TLS requires.
	Config *tls.Config
	// RequireTLS refuses clients that do not ask for TLS (but for a
	// CancelRequest, which carries no credentials and which older
	// clients always send in plain).
	RequireTLS bool
}

var _ l4.Terminator = (*Postgres)(nil)

// Terminate negotiates with the client and returns the TLS stream, or for
// a plain client the connection itself with the bytes read from it.
func (p *Postgres) Terminate(c *net.TCPConn, cl *l4.Client) (net.Conn, []byte, error) {
	var head [8]byte
	// At most two rounds: GSSENCRequest, refused, then SSLRequest or a
	// StartupMessage.
	for range 2 {
		if _, err := io.ReadFull(c, head[:1]); err != nil {
			return nil, nil, fmt.Errorf("reading the first message: %w", err)
		}
		if head[0] == tlsHandshake {
			return p.direct(c, head[0], cl)
		}
		if _, err := io.ReadFull(c, head[1:]); err != nil {
			return nil, nil, fmt.Errorf("reading the first message: %w", err)
		}
		n, kind := pgFirst(head)
		switch kind {
		case pgSSL:
			// Exactly these 8 bytes were read: anything the client
			// sent after them goes into the TLS handshake, not to
			// the backend (CVE-2021-23214).
			if _, err := c.Write([]byte{'S'}); err != nil {
				return nil, nil, err
			}
			tc, err := handshake(c, p.Config, cl)
			return tc, nil, err
		case pgGSS:
			if _, err := c.Write([]byte{'N'}); err != nil {
				return nil, nil, err
			}
		case pgCancel:
			return p.plain(c, head[:], n, false)
		case pgStartup:
			return p.plain(c, head[:], n, p.RequireTLS)
		default:
			return nil, nil, fmt.Errorf("not a PostgreSQL startup: % x", head)
		}
	}
	return nil, nil, fmt.Errorf("a second GSSENCRequest")
}

// What a client's first 8 bytes are.
const (
	pgBad = iota
	pgSSL
	pgGSS
	pgCancel
	pgStartup
)

// pgFirst says what a client's first message is by its length and code,
// and returns its length.
func pgFirst(head [8]byte) (int, int) {
	n := binary.BigEndian.Uint32(head[:4])
	code := binary.BigEndian.Uint32(head[4:])
	switch {
	case n == 8 && code == pgSSLRequest:
		return 8, pgSSL
	case n == 8 && code == pgGSSENCRequest:
		return 8, pgGSS
	case n == 16 && code == pgCancelRequest:
		return 16, pgCancel
	case code>>16 == pgProtocol3>>16 && n >= 8 && n <= pgMaxStartup:
		return int(n), pgStartup
	}
	return 0, pgBad
}

// plain reads the rest of a plain client's first message, to pass it on,
// or refuses the client.
func (p *Postgres) plain(c *net.TCPConn, head []byte, n int, refuse bool) (net.Conn, []byte, error) {
	if refuse {
		c.Write(pgError("28000", "sluice: this server requires TLS (connect with sslmode=require or stronger)"))
		return nil, nil, ErrPlaintextRefused
	}
	msg := make([]byte, n)
	copy(msg, head)
	if _, err := io.ReadFull(c, msg[len(head):]); err != nil {
		return nil, nil, fmt.Errorf("reading the startup message: %w", err)
	}
	return c, msg, nil
}

// direct runs a TLS handshake that started without an SSLRequest; first is
// the byte of it already read.
func (p *Postgres) direct(c *net.TCPConn, first byte, cl *l4.Client) (net.Conn, []byte, error) {
	tc, err := handshake(&replay{TCPConn: c, b: []byte{first}}, p.Config, cl)
	if err != nil {
		return nil, nil, err
	}
	// PostgreSQL 17 requires ALPN on direct TLS, so that a TLS
	// connection meant for another service cannot be replayed to it.
	if proto := tc.ConnectionState().NegotiatedProtocol; proto != pgALPN {
		return nil, nil, fmt.Errorf("direct TLS negotiated ALPN %q, want %q", proto, pgALPN)
	}
	return tc, nil, nil
}

// replay is a connection whose first bytes were read already: they are
// read again first. Only the handshake's goroutine reads it.
type replay struct {
	*net.TCPConn
	b []byte
}

func (r *replay) Read(p []byte) (int, error) {
	if len(r.b) > 0 {
		n := copy(p, r.b)
		r.b = r.b[n:]
		return n, nil
	}
	return r.TCPConn.Read(p)
}

// pgError builds an ErrorResponse (FATAL, with an SQLSTATE code and a
// message), which clients show as the reason the connection failed.
func pgError(code, msg string) []byte {
	body := []byte{'S'}
	body = append(body, "FATAL\x00"...)
	body = append(body, 'V')
	body = append(body, "FATAL\x00"...)
	body = append(body, 'C')
	body = append(body, code...)
	body = append(body, 0, 'M')
	body = append(body, msg...)
	body = append(body, 0, 0)
	out := []byte{'E', 0, 0, 0, 0}
	binary.BigEndian.PutUint32(out[1:], uint32(4+len(body)))
	return append(out, body...)
}

// PostgresBackend speaks TLS to PostgreSQL backends: an SSLRequest, then,
// on 'S', the TLS handshake.
type PostgresBackend struct {
	// Config is the client configuration; its NextProtos should be
	// ["postgresql"] (PostgreSQL 17 refuses other ALPN protocols).
	Config *tls.Config
}

var _ l4.BackendStarter = PostgresBackend{}

// StartBackend asks the backend for TLS and runs the handshake.
func (b PostgresBackend) StartBackend(c *net.TCPConn, cl *l4.Client) (net.Conn, error) {
	var req [8]byte
	binary.BigEndian.PutUint32(req[:4], 8)
	binary.BigEndian.PutUint32(req[4:], pgSSLRequest)
	if _, err := c.Write(req[:]); err != nil {
		return nil, fmt.Errorf("sending SSLRequest: %w", err)
	}
	var answer [1]byte
	if _, err := io.ReadFull(c, answer[:]); err != nil {
		return nil, fmt.Errorf("reading the answer to SSLRequest: %w", err)
	}
	switch answer[0] {
	case 'S':
	case 'N':
		return nil, ErrBackendRefusedTLS
	default:
		return nil, fmt.Errorf("answer %q to SSLRequest: not a PostgreSQL server", answer[0])
	}
	return BackendTLS(b).StartBackend(c, cl)
}
