package config

import "slices"

// StartTLSPostgres is ListenerTLS.StartTLS for PostgreSQL: the client's
// SSLRequest is answered before the handshake.
const StartTLSPostgres = "postgres"

// StartTLSMySQL is ListenerTLS.StartTLS for MySQL and MariaDB: the
// backend's greeting is relayed, and the client's SSLRequest taken,
// before the handshake.
const StartTLSMySQL = "mysql"

// tcpTLS reads the tls table's keys that only TCP listeners have.
func (d *decoder) tcpTLS(t *table, c *ListenerTLS, proto Protocol) {
	if proto != TCP {
		for _, k := range []string{"alpn", "starttls", "require_tls", "handshake_timeout"} {
			if t.has(k) {
				t.errorf(k, "applies only to TCP listeners")
			}
		}
		return
	}
	if t.has("client_cert_header") {
		t.errorf("client_cert_header", "applies only to HTTP listeners")
	}
	c.HandshakeTimeout = defaultHandshakeTimeout
	t.duration("handshake_timeout", &c.HandshakeTimeout, true)
	if t.has("alpn") {
		for _, s := range t.stringList("alpn") {
			if s == "" || len(s) > 255 {
				t.errorf("alpn", "%s is not a protocol name (1 to 255 bytes)", quote(s))
				continue
			}
			c.ALPN = append(c.ALPN, s)
		}
	}
	c.RequireTLS = true
	if s, ok := t.str("starttls"); ok {
		switch s {
		case StartTLSPostgres:
			c.StartTLS = s
			if t.has("alpn") && !slices.Equal(c.ALPN, []string{"postgresql"}) {
				t.errorf("alpn", "is \"postgresql\" with starttls = \"postgres\" (PostgreSQL 17 checks it)")
			}
			c.ALPN = []string{"postgresql"}
		case StartTLSMySQL:
			c.StartTLS = s
			if t.has("alpn") {
				t.errorf("alpn", "is not used with starttls = \"mysql\": MySQL clients offer none")
			}
			c.ALPN = nil
		default:
			t.errorf("starttls", "unknown protocol %s: want \"postgres\" or \"mysql\"", quote(s))
		}
	}
	if t.has("require_tls") {
		t.boolean("require_tls", &c.RequireTLS)
		if c.StartTLS == "" {
			t.errorf("require_tls", "is used only with starttls: other clients must start with TLS")
		}
	}
}

// tcpListenerTLS checks what a TCP listener's TLS cannot be combined
// with yet: routing by SNI, which passes TLS through. (A PROXY header
// before the ClientHello is read as on plain listeners.)
func (d *decoder) tcpListenerTLS(t *table, l *Listener) {
	l.TLS = d.listenerTLS(t, TCP)
	if t.has("sni_routes") && l.TLS != nil {
		t.errorf("sni_routes", "cannot be combined with tls yet: they pass TLS through")
	}
}
