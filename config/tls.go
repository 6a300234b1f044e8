package config

import (
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	"sluice/health"
	"sluice/internal/certs"
	"sluice/internal/ticketkeys"
)

// ListenerTLS is a listener's [listeners.NAME.tls] table: TLS is
// terminated on its sockets.
type ListenerTLS struct {
	// Certificates are the pairs served, chosen by SNI from the names in
	// the certificates; the first is the default. There is at least one
	// unless ACME is set, and each loaded when the file was read.
	Certificates []certs.Pair
	// ACME, if not nil, gets certificates for its names from an ACME CA;
	// they take precedence over Certificates for those names.
	ACME *ACME
	// MinVersion is tls.VersionTLS12 (the default) or tls.VersionTLS13.
	MinVersion uint16
	// Curves are the key exchanges accepted, in order of preference;
	// nil means Go's default (X25519MLKEM768, SecP256r1MLKEM768,
	// SecP384r1MLKEM1024, X25519, P-256, P-384, P-521 in Go 1.26).
	Curves []tls.CurveID
	// ClientAuth is tls.NoClientCert (the default),
	// tls.VerifyClientCertIfGiven ("request") or
	// tls.RequireAndVerifyClientCert ("require").
	ClientAuth tls.ClientAuthType
	// ClientCAFile holds the CAs client certificates are verified
	// against; set exactly when ClientAuth is.
	ClientCAFile string
	// ClientCertHeader (HTTP) names a request header set to the verified
	// client certificate's subject; "" sets none.
	ClientCertHeader string
	// ReloadInterval is how often the certificate files are checked for
	// changes; > 0.
	ReloadInterval time.Duration
	// ExpiryWarning is how long before expiry a certificate is warned
	// about in the log; > 0.
	ExpiryWarning time.Duration
	// TicketKeyFile, if set, holds the session ticket keys (see
	// ticketkeys.Options.File), read when the file was read and again
	// when it changes (checked every ReloadInterval).
	TicketKeyFile string
	// TicketRotation, without TicketKeyFile, rotates in-memory session
	// ticket keys this often; zero leaves the keys to crypto/tls.
	TicketRotation time.Duration

	// ALPN (TCP) are the protocols offered to clients, in order; nil
	// negotiates none. StartTLS "postgres" sets ["postgresql"].
	ALPN []string
	// StartTLS (TCP) is the protocol that negotiates TLS before the
	// handshake: "" for none (the client starts with TLS),
	// StartTLSPostgres or StartTLSMySQL.
	StartTLS string
	// RequireTLS (TCP, StartTLS) refuses clients that do not ask for
	// TLS; true unless set false.
	RequireTLS bool
	// HandshakeTimeout (TCP) bounds the negotiation and the TLS
	// handshake; > 0.
	HandshakeTimeout time.Duration
}

var listenerTLSKeys = []string{"cert_file", "key_file", "certificates", "min_version", "curves",
	"client_auth", "client_ca_file", "client_cert_header", "reload_interval", "expiry_warning",
	"alpn", "starttls", "require_tls", "handshake_timeout", "acme",
	"ticket_key_file", "ticket_rotation"}

// curveNames are the names curves may be given by, lower case.
var curveNames = map[string]tls.CurveID{
	"x25519mlkem768": tls.X25519MLKEM768,
	// Go 1.26's other hybrids, on by default after X25519MLKEM768.
	"secp256r1mlkem768":  tls.SecP256r1MLKEM768,
	"secp384r1mlkem1024": tls.SecP384r1MLKEM1024,
	"x25519":             tls.X25519,
	"p256":               tls.CurveP256,
	"p-256":              tls.CurveP256,
	"p384":               tls.CurveP384,
	"p-384":              tls.CurveP384,
	"p521":               tls.CurveP521,
	"p-521":              tls.CurveP521,
}

// listenerTLS reads a listener's tls table, nil if it has none.
func (d *decoder) listenerTLS(lt *table, proto Protocol) *ListenerTLS {
	t := lt.table("tls")
	if t == nil {
		return nil
	}
	t.allow(listenerTLSKeys...)
	c := &ListenerTLS{MinVersion: tls.VersionTLS12, ReloadInterval: defaultTLSReload, ExpiryWarning: defaultExpiryWarning}
	c.Certificates = d.certPairs(t)
	c.ACME = d.acme(t)
	if s, ok := t.str("min_version"); ok {
		switch s {
		case "1.2":
			c.MinVersion = tls.VersionTLS12
		case "1.3":
			c.MinVersion = tls.VersionTLS13
		default:
			t.errorf("min_version", "unknown version %s: want \"1.2\" or \"1.3\" (older ones are broken)", quote(s))
		}
	}
	if t.has("curves") {
		for _, s := range t.stringList("curves") {
			id, ok := curveNames[strings.ToLower(s)]
			if !ok {
				t.errorf("curves", "unknown curve %s: want X25519MLKEM768, SecP256r1MLKEM768, SecP384r1MLKEM1024, X25519, P256, P384 or P521", quote(s))
				continue
			}
			c.Curves = append(c.Curves, id)
		}
	}
	d.clientAuth(t, c)
	t.duration("reload_interval", &c.ReloadInterval, true)
	t.duration("expiry_warning", &c.ExpiryWarning, true)
	d.ticketKeys(t, c)
	d.tcpTLS(t, c, proto)
	return c
}

// certPairs reads cert_file and key_file (the first pair) and the
// certificates array (the others), and loads each pair.
func (d *decoder) certPairs(t *table) []certs.Pair {
	var pairs []certs.Pair
	var where []func(format string, args ...any) // reports against each pair's table
	if t.has("cert_file") || t.has("key_file") {
		t.required("cert_file", "key_file")
		var p certs.Pair
		if t.str2("cert_file", &p.CertFile) && t.str2("key_file", &p.KeyFile) {
			pairs = append(pairs, p)
			where = append(where, func(f string, a ...any) { t.errorf("cert_file", f, a...) })
		}
	}
	if prim, ok := t.keys["certificates"]; ok {
		entries, ok := tableArray(&d.md, prim)
		if !ok || len(entries) == 0 {
			t.errorf("certificates", "must be an array of tables with cert_file and key_file, such as "+
				"[[%s.certificates]]", t.path)
		}
		nodes := t.node.key("certificates")
		for i, keys := range entries {
			et := &table{d: d, path: fmt.Sprintf("%s.certificates[%d]", t.path, i), keys: keys, node: nodes.elem(i)}
			et.allow("cert_file", "key_file")
			et.required("cert_file", "key_file")
			var p certs.Pair
			if et.str2("cert_file", &p.CertFile) && et.str2("key_file", &p.KeyFile) {
				pairs = append(pairs, p)
				where = append(where, func(f string, a ...any) { et.errorf("cert_file", f, a...) })
			}
		}
	}
	if len(pairs) == 0 && !t.has("cert_file") && !t.has("key_file") && !t.has("certificates") && !t.has("acme") {
		t.errorf("cert_file", "no certificate: add cert_file and key_file, [[%s.certificates]] or acme", t.path)
	}
	for i := range pairs {
		pairs[i].CertFile, pairs[i].KeyFile = d.path(pairs[i].CertFile), d.path(pairs[i].KeyFile)
		if _, err := certs.Load(pairs[i]); err != nil {
			where[i]("%v", err)
		}
	}
	return pairs
}

// str2 sets *dst from k's string value and reports whether it was one.
func (t *table) str2(k string, dst *string) bool {
	s, ok := t.str(k)
	if ok {
		*dst = s
	}
	return ok
}

// clientAuth reads client_auth, client_ca_file and client_cert_header.
func (d *decoder) clientAuth(t *table, c *ListenerTLS) {
	if s, ok := t.str("client_auth"); ok {
		switch s {
		case "request":
			c.ClientAuth = tls.VerifyClientCertIfGiven
		case "require":
			c.ClientAuth = tls.RequireAndVerifyClientCert
		default:
			t.errorf("client_auth", "unknown mode %s: want \"request\" or \"require\"", quote(s))
		}
	}
	if t.str2("client_ca_file", &c.ClientCAFile) {
		c.ClientCAFile = d.path(c.ClientCAFile)
		if _, err := health.LoadCAFile(c.ClientCAFile); err != nil {
			t.errorf("client_ca_file", "%v", err)
		}
	}
	switch {
	case t.has("client_auth") && !t.has("client_ca_file"):
		t.errorf("client_auth", "needs client_ca_file: the CAs client certificates are verified against")
	case t.has("client_ca_file") && !t.has("client_auth"):
		t.errorf("client_ca_file", "is used only with client_auth = \"request\" or \"require\"")
	}
	if t.str2("client_cert_header", &c.ClientCertHeader) {
		if _, ok := t.headerName("client_cert_header", c.ClientCertHeader); !ok {
			return
		}
		if !t.has("client_auth") {
			t.errorf("client_cert_header", "is used only with client_auth = \"request\" or \"require\"")
		}
	}
}

// ticketKeys reads ticket_key_file, which is loaded now so that sluice
// check reports a bad one, and ticket_rotation.
func (d *decoder) ticketKeys(t *table, c *ListenerTLS) {
	if t.str2("ticket_key_file", &c.TicketKeyFile) {
		c.TicketKeyFile = d.path(c.TicketKeyFile)
		if _, err := ticketkeys.Load(c.TicketKeyFile); err != nil {
			t.errorf("ticket_key_file", "%v", err)
		}
	}
	t.duration("ticket_rotation", &c.TicketRotation, true)
	if c.TicketKeyFile != "" && t.has("ticket_rotation") {
		t.errorf("ticket_rotation", "is for keys made in memory: with ticket_key_file, keys rotate when the file changes")
	}
}
