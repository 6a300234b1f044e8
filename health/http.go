package health

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
)

// HTTP checks that a backend answers an HTTP/1.1 request with a status in
// range and, optionally, a body containing a string: Patroni's /primary
// and /replica, a service's /healthz.
type HTTP struct {
	// TLS sends the request over TLS (https), as SNI, Verify and RootCAs
	// say.
	TLS bool
	// Method is the request method; empty means GET.
	Method string
	// Path is the request target; empty means "/".
	Path string
	// Host is the Host header; empty means the address probed.
	Host string
	// StatusMin and StatusMax bound the accepted status; zero means 200
	// and 399.
	StatusMin, StatusMax int
	// Body is a substring the body must contain; empty means none.
	Body string
	// SNI is the TLS server name; empty sends none and verifies the
	// certificate against the IP address.
	SNI string
	// Verify checks the certificate; false accepts any.
	Verify bool
	// RootCAs verifies the chain; nil means the system's roots.
	RootCAs *x509.CertPool
	// Certificates are presented to a backend that asks for a client
	// certificate; none by default.
	Certificates []tls.Certificate
}

var _ Prober = HTTP{}

// Probe sends one request on a new connection and reads the answer.
//
// It writes the request on its own connection rather than through an
// http.Client: a Transport would keep idle connections (and their
// goroutines) between checks, and a check must see the backend accept a
// new connection anyway.
func (h HTTP) Probe(ctx context.Context, addr netip.AddrPort) error {
	var c net.Conn
	var err error
	if h.TLS {
		c, err = tlsDial(ctx, addr, TLS{SNI: h.SNI, Verify: h.Verify, RootCAs: h.RootCAs, Certificates: h.Certificates})
	} else {
		c, err = dial(ctx, "tcp", addr)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	req, err := h.request(addr)
	if err != nil {
		return err
	}
	if err := req.Write(c); err != nil {
		return shortError("send", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return shortError("read", err)
	}
	defer resp.Body.Close()
	lo, hi := h.statusRange()
	if resp.StatusCode < lo || resp.StatusCode > hi {
		return fmt.Errorf("status %d, want %d-%d", resp.StatusCode, lo, hi)
	}
	if h.Body == "" {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if !bytes.Contains(body, []byte(h.Body)) {
		if err != nil {
			return shortError("read body", err)
		}
		return fmt.Errorf("body does not contain %q", h.Body)
	}
	return nil
}

// request builds the check's request.
func (h HTTP) request(addr netip.AddrPort) (*http.Request, error) {
	method, path := h.Method, h.Path
	if method == "" {
		method = http.MethodGet
	}
	if path == "" {
		path = "/"
	}
	scheme := "http"
	if h.TLS {
		scheme = "https"
	}
	req, err := http.NewRequest(method, scheme+"://"+addr.String()+path, nil)
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	if h.Host != "" {
		req.Host = h.Host
	}
	req.Close = true // Connection: close; the connection is ours alone
	req.Header.Set("User-Agent", "sluice-health-check")
	return req, nil
}

func (h HTTP) statusRange() (lo, hi int) {
	lo, hi = h.StatusMin, h.StatusMax
	if lo == 0 {
		lo = 200
	}
	if hi == 0 {
		hi = 399
	}
	return lo, hi
}
