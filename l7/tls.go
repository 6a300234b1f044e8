package l7

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"slices"

	"sluice/l7/route"
)

// Hosts says which hosts the certificate served for a connection's server
// name covers; *certs.Store satisfies it.
type Hosts interface {
	Covers(serverName, host string) bool
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
