package tlsterm

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"sluice/l4"
)

// MySQL offloads TLS for MySQL and MariaDB clients. The server speaks
// first, so a backend is connected before the client is answered: its
// greeting is passed to the client with CLIENT_SSL set; a client that
// answers with an SSLRequest gets the TLS handshake, then its
// HandshakeResponse goes to the backend in plain (or in TLS, after
// sluice's own SSLRequest, when Backend is set). Set the same *MySQL as a
// Server's Terminate and BackendStart.
//
// A packet's sequence id counts the packets of the connection phase, and
// an SSLRequest is one of them: when one side of sluice has TLS and the
// other not, the ids of the authentication exchange that follows are
// shifted by one on the way through, until the server's OK or ERR ends
// the phase. From then on each command restarts the count, and the bytes
// are copied as they are (compressed or not).
type MySQL struct {
	// Config is the server configuration for clients.
	Config *tls.Config
	// RequireTLS refuses clients that do not ask for TLS, with an ERR
	// packet.
	RequireTLS bool
	// Backend, if not nil, is the client configuration for TLS to the
	// backends; nil speaks to them in plain.
	Backend *tls.Config
}

var (
	_ l4.Negotiator     = (*MySQL)(nil)
	_ l4.BackendStarter = (*MySQL)(nil)
)

// greeted is a backend connection whose greeting (a whole packet) was
// read by StartBackend, for Negotiate.
type greeted struct {
	net.Conn
	greeting []byte
	caps     int // offset of the capability flags in greeting
}

// Terminate does nothing: a MySQL client waits for the server's greeting.
func (m *MySQL) Terminate(c *net.TCPConn, _ *l4.Client) (net.Conn, []byte, error) {
	return c, nil, nil
}

// StartBackend reads the backend's greeting. One that is an ERR packet
// (too many connections), malformed, or without TLS when Backend asks for
// it fails this backend, and the next is tried.
func (m *MySQL) StartBackend(c *net.TCPConn, _ *l4.Client) (net.Conn, error) {
	g, err := readMySQLPacket(c)
	if err != nil {
		return nil, fmt.Errorf("reading the greeting: %w", err)
	}
	if g[3] != 0 {
		return nil, fmt.Errorf("%w: greeting with sequence id %d", errMySQLPacket, g[3])
	}
	at, err := greetingCaps(g[myHeader:])
	if err != nil {
		return nil, err
	}
	at += myHeader
	if m.Backend != nil && binary.LittleEndian.Uint16(g[at:])&myClientSSL == 0 {
		return nil, ErrBackendRefusedTLS
	}
	return &greeted{Conn: c, greeting: g, caps: at}, nil
}

// Negotiate passes the greeting on, terminates the client's TLS if it asks
// for it, and carries its login to the backend.
func (m *MySQL) Negotiate(cs, bs net.Conn, cl *l4.Client) (net.Conn, net.Conn, error) {
	g, ok := bs.(*greeted)
	if !ok {
		return nil, nil, errors.New("tlsterm: MySQL negotiates only with the backends its StartBackend started")
	}
	bs = g.Conn
	caps := binary.LittleEndian.Uint16(g.greeting[g.caps:])
	binary.LittleEndian.PutUint16(g.greeting[g.caps:], caps|myClientSSL)
	if _, err := cs.Write(g.greeting); err != nil {
		return nil, nil, fmt.Errorf("writing the greeting: %w", err)
	}
	cs, resp, err := m.client(cs, cl)
	if err != nil {
		return nil, nil, err
	}
	out := withCaps(resp, 1, false)
	if m.Backend != nil {
		// The client's own capabilities, as its response has them.
		if _, err := bs.Write(sslRequestFor(resp)); err != nil {
			return nil, nil, &l4.BackendError{Err: fmt.Errorf("sending SSLRequest: %w", err)}
		}
		tc, err := clientHandshake(bs, m.Backend)
		if err != nil {
			return nil, nil, &l4.BackendError{Err: err}
		}
		bs, out = tc, withCaps(resp, 2, true)
	}
	if _, err := bs.Write(out); err != nil {
		return nil, nil, &l4.BackendError{Err: fmt.Errorf("writing the handshake response: %w", err)}
	}
	if shift := out[3] - resp[3]; shift != 0 {
		if err := myAuth(cs, bs, shift); err != nil {
			return nil, nil, err
		}
	}
	return cs, bs, nil
}

// client reads the client's answer to the greeting. It returns the stream
// to proxy (TLS, or the client's socket) and the HandshakeResponse41
// packet read from it.
func (m *MySQL) client(cs net.Conn, cl *l4.Client) (net.Conn, []byte, error) {
	p, err := readMySQLPacket(cs)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the client's first packet: %w", err)
	}
	switch _, kind := clientFirst(p[myHeader:]); kind {
	case myResponse:
		if m.RequireTLS {
			cs.Write(myErrPacket(p[3]+1, 1045, "28000", "sluice: this server requires TLS (connect with --ssl)"))
			return nil, nil, ErrPlaintextRefused
		}
		return cs, p, nil
	case mySSLRequest:
	case myOldResponse:
		return nil, nil, fmt.Errorf("%w: a pre-4.1 client, which cannot ask for TLS", errMySQLPacket)
	default:
		return nil, nil, fmt.Errorf("%w: first packet of %d bytes is neither an SSLRequest nor a handshake response",
			errMySQLPacket, len(p)-myHeader)
	}
	// Exactly the SSLRequest was read: the bytes after it are the TLS
	// handshake's.
	tc, err := handshake(cs, m.Config, cl)
	if err != nil {
		return nil, nil, err
	}
	if p, err = readMySQLPacket(tc); err != nil {
		return nil, nil, fmt.Errorf("reading the handshake response: %w", err)
	}
	// The response repeats CLIENT_SSL, which clientFirst takes for a
	// request.
	if len(p) <= myHeader+mySSLRequestLen {
		return nil, nil, fmt.Errorf("%w: a handshake response of %d bytes", errMySQLPacket, len(p)-myHeader)
	}
	if _, kind := clientFirst(withCaps(p, p[3], false)[myHeader:]); kind != myResponse {
		return nil, nil, fmt.Errorf("%w: not a handshake response after TLS", errMySQLPacket)
	}
	return tc, p, nil
}

// myAuth relays the authentication exchange that follows the client's
// response, adding shift to the sequence id of each packet to the server
// and taking it from each packet to the client, until the server's OK or
// ERR, which is passed on last. The exchange is relayed both ways at once:
// whether the client answers a packet of the server's depends on the
// authentication plugin (caching_sha2_password's "fast auth success" is
// followed by the server's OK, not by the client).
func myAuth(cs, bs net.Conn, shift byte) error {
	var done atomic.Bool
	up := make(chan error, 1)
	go func() { // joined below
		err := myAuthUp(cs, bs, shift, &done)
		if err != nil {
			bs.SetReadDeadline(time.Unix(1, 0)) // wake myAuthDown
		}
		up <- err
	}()
	last, derr := myAuthDown(cs, bs, shift)
	// The client cannot speak before it has the OK, not written yet: the
	// reader of its side is woken with nothing read, and stops.
	done.Store(true)
	cs.SetReadDeadline(time.Unix(1, 0))
	if err := <-up; err != nil {
		return err
	}
	if derr != nil {
		return derr
	}
	if _, err := cs.Write(last); err != nil {
		return fmt.Errorf("writing the server's answer: %w", err)
	}
	return nil
}

// myAuthDown relays the server's packets to the client until its OK or
// ERR, which it returns unsent.
func myAuthDown(cs, bs net.Conn, shift byte) ([]byte, error) {
	for {
		p, err := readMySQLPacket(bs)
		if err != nil {
			return nil, &l4.BackendError{Err: fmt.Errorf("reading the authentication exchange: %w", err)}
		}
		p[3] -= shift
		if len(p) > myHeader && (p[myHeader] == myOK || p[myHeader] == myERR) {
			return p, nil
		}
		if _, err := cs.Write(p); err != nil {
			return nil, fmt.Errorf("writing the authentication exchange: %w", err)
		}
	}
}

// myAuthUp relays the client's packets to the server until done is set
// and it is woken with no packet begun.
func myAuthUp(cs, bs net.Conn, shift byte, done *atomic.Bool) error {
	var h [myHeader]byte
	for {
		n, err := io.ReadFull(cs, h[:])
		if err != nil {
			if n == 0 && done.Load() && errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			return fmt.Errorf("reading the authentication exchange: %w", err)
		}
		size, err := myPayloadLen(h)
		if err != nil {
			return err
		}
		p := make([]byte, myHeader+size)
		copy(p, h[:])
		if _, err := io.ReadFull(cs, p[myHeader:]); err != nil {
			return fmt.Errorf("reading the authentication exchange: %w", err)
		}
		p[3] += shift
		if _, err := bs.Write(p); err != nil {
			return &l4.BackendError{Err: fmt.Errorf("writing the authentication exchange: %w", err)}
		}
	}
}
