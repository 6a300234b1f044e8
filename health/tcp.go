package health

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
)

// maxResponse bounds what a check reads looking for its expected answer.
const maxResponse = 64 << 10

// TCP checks that a backend accepts a TCP connection.
type TCP struct{}

var _ Prober = TCP{}

// Probe connects to addr and closes the connection.
func (TCP) Probe(ctx context.Context, addr netip.AddrPort) error {
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// dial connects to addr within ctx, with the connection's deadline set to
// ctx's, sends the check's Preamble (see withPreambleSent), and returns errors short enough to log as a reason: "connect:
// connection refused" rather than "dial tcp 10.0.0.3:5432: connect:
// connection refused" (the address is in the log line already).
func dial(ctx context.Context, network string, addr netip.AddrPort) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr.String())
	if err != nil {
		return nil, shortError("connect", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	pc, err := withPreambleSent(ctx, network, c)
	if err != nil {
		c.Close()
		return nil, err
	}
	return pc, nil
}

// shortError strips the operation and address from a net error, keeping
// what failed (op) and why.
func shortError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		inner := oe.Err
		var se *os.SyscallError
		if errors.As(inner, &se) {
			inner = se.Err
		}
		return fmt.Errorf("%s: %w", op, inner)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// SendExpect writes Send to a new connection, then reads until the answer
// holds Expect, matches Regexp, or the connection ends or times out. With
// neither Expect nor Regexp, writing Send is enough.
type SendExpect struct {
	// Send is written first; empty means nothing (for protocols whose
	// server speaks first, such as SMTP or MySQL).
	Send []byte
	// Expect is a substring the answer must contain; empty means none.
	Expect string
	// Regexp must match the answer; nil means none.
	Regexp *regexp.Regexp
}

var _ Prober = SendExpect{}

// Probe connects, sends and reads.
func (s SendExpect) Probe(ctx context.Context, addr netip.AddrPort) error {
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	return sendExpect(c, s.Send, s.Expect, s.Regexp)
}

// sendExpect writes send to c, then reads until the answer satisfies expect
// and re, or the answer ends.
func sendExpect(c net.Conn, send []byte, expect string, re *regexp.Regexp) error {
	if len(send) > 0 {
		if _, err := c.Write(send); err != nil {
			return shortError("send", err)
		}
	}
	if expect == "" && re == nil {
		return nil
	}
	var got []byte
	buf := make([]byte, 4096)
	for len(got) < maxResponse {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if matches(got, expect, re) {
			return nil
		}
		if err != nil {
			if len(got) > 0 || errors.Is(err, io.EOF) {
				return fmt.Errorf("unexpected answer %s", quoteStart(got))
			}
			return shortError("read", err)
		}
	}
	return fmt.Errorf("unexpected answer %s", quoteStart(got))
}

func matches(got []byte, expect string, re *regexp.Regexp) bool {
	return (expect == "" || bytes.Contains(got, []byte(expect))) && (re == nil || re.Match(got))
}

// quoteStart quotes the start of an answer for a reason text.
func quoteStart(b []byte) string {
	const n = 64
	if len(b) > n {
		return fmt.Sprintf("%q...", b[:n])
	}
	return fmt.Sprintf("%q", b)
}

// TLS checks that a backend completes a TLS handshake.
type TLS struct {
	// SNI is the server name sent, and verified if Verify is set; empty
	// sends none and verifies the certificate against the IP address.
	SNI string
	// Verify checks the certificate chain and name; false accepts any
	// certificate (the check is then only that TLS works).
	Verify bool
	// RootCAs verifies the chain; nil means the system's roots.
	RootCAs *x509.CertPool
	// Certificates are presented to a backend that asks for a client
	// certificate (mutual TLS); none by default.
	Certificates []tls.Certificate
}

var _ Prober = TLS{}

// Probe connects and shakes hands.
func (t TLS) Probe(ctx context.Context, addr netip.AddrPort) error {
	c, err := tlsDial(ctx, addr, t)
	if err != nil {
		return err
	}
	return c.Close()
}

// tlsDial connects to addr and completes a handshake as t says.
func tlsDial(ctx context.Context, addr netip.AddrPort, t TLS) (*tls.Conn, error) {
	raw, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	name := t.SNI
	if name == "" {
		name = addr.Addr().String() // verified against IP SANs; not sent as SNI
	}
	c := tls.Client(raw, &tls.Config{
		ServerName:         name,
		InsecureSkipVerify: !t.Verify, // by request: the check is that TLS answers
		RootCAs:            t.RootCAs,
		Certificates:       t.Certificates,
		MinVersion:         tls.VersionTLS12,
	})
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	return c, nil
}

// LoadCAFile reads a PEM file of CA certificates for TLS.RootCAs and
// HTTP.RootCAs.
func LoadCAFile(path string) (*x509.CertPool, error) {
	pem, err := ReadSmallFile(path, maxCAFile)
	if err != nil {
		return nil, fmt.Errorf("reading CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s: no PEM certificates in it", path)
	}
	return pool, nil
}

// maxCAFile bounds a CA file: a bundle of every public root is about 200 KB.
const maxCAFile = 4 << 20

// ReadSmallFile reads the regular file at path if it holds at most max
// bytes. A configuration naming a device or a pipe (/dev/zero, /dev/stdin)
// is refused rather than read forever.
func ReadSmallFile(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	switch {
	case err != nil:
		return nil, err
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s is not a regular file", path)
	case fi.Size() > max:
		return nil, fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return io.ReadAll(io.LimitReader(f, max))
}
