package l7

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"slices"
	"strings"

	"sluice/l7/route"
)

// Hosts says which hosts the certificate served for a connection's server
// name covers; *certs.Store satisfies it.
type Hosts interface {
	Covers(serverName, host string) bool
}

// Challenges answers ACME HTTP-01 validations (RFC 8555 8.3), which a CA
// makes to port 80 of the names it is asked to certify, whichever listener
// the certificates are for; *acmecert.HTTP01 satisfies it.
type Challenges interface {
	// Handler returns the handler of a validation for host (canonical,
	// without port), or nil if it has no certificate to get for host.
	Handler(host string) http.Handler
}

// acmeChallengePath is where HTTP-01 validations ask for their tokens.
const acmeChallengePath = "/.well-known/acme-challenge/"

// acmeChallenge answers r if it is an HTTP-01 validation that s.ACME
// takes, and reports whether it did.
func (s *Server) acmeChallenge(rec *recorder, r *http.Request) bool {
	if s.ACME == nil || !strings.HasPrefix(r.URL.Path, acmeChallengePath) {
		return false
	}
	h := s.ACME.Handler(route.CanonicalHost(r.Host))
	if h == nil {
		return false
	}
	rec.ex.route, rec.ex.end = "acme", EndResponded
	h.ServeHTTP(rec, r)
	return true
}

// tlsConfig returns the listener's TLS configuration as served: s.TLS
// with HTTP/2 and HTTP/1.1 offered by ALPN (RFC 7301), h2 first, then any
// other protocol s.TLS offers (ACME's acme-tls/1, whose validations
// GetCertificate answers and which close once the handshake is done).
func (s *Server) tlsConfig() *tls.Config {
	c := s.TLS.Clone()
	c.NextProtos = []string{"h2", "http/1.1"}
	for _, p := range s.TLS.NextProtos {
		if !slices.Contains(c.NextProtos, p) {
			c.NextProtos = append(c.NextProtos, p)
		}
	}
	return c
}

// backendTLS returns the transport's client TLS configuration and the
// HTTP versions it may negotiate, from the versions c.NextProtos offers:
// the transport sets NextProtos itself from its Protocols.
func backendTLS(c *tls.Config) (*tls.Config, *http.Protocols) {
	protocols := new(http.Protocols)
	offer := c.NextProtos
	if len(offer) == 0 {
		offer = []string{"h2", "http/1.1"}
	}
	protocols.SetHTTP2(slices.Contains(offer, "h2"))
	protocols.SetHTTP1(slices.Contains(offer, "http/1.1"))
	c = c.Clone()
	c.NextProtos = nil
	return c, protocols
}

// misdirected reports whether r came over TLS for a host the connection's
// certificate does not cover. Browsers send every host a certificate
// covers over one HTTP/2 connection (RFC 9113 9.1.1); when sluice serves
// that host with another certificate, the client must open a connection
// of its own for it, which a 421 asks for (RFC 9110 15.5.20). A client
// that sent no server name was promised no name, and is not checked.
func (s *Server) misdirected(r *http.Request) bool {
	if r.TLS == nil || s.Hosts == nil || r.TLS.ServerName == "" {
		return false
	}
	host := route.CanonicalHost(r.Host)
	if host == route.CanonicalHost(r.TLS.ServerName) {
		return false
	}
	return !s.Hosts.Covers(r.TLS.ServerName, host)
}

// clientSubject returns the subject of the client's verified certificate,
// or "" if it sent none (or TLS is off).
func clientSubject(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return ""
	}
	return subjectOf(r.TLS.VerifiedChains[0][0])
}

func subjectOf(c *x509.Certificate) string { return c.Subject.String() }
