package config

import (
	"sluice/health"
	"sluice/internal/certs"
)

// PoolTLS is a pool's [pools.NAME.tls] table: its backends are spoken to
// over TLS, by HTTP listeners and by the pool's https and tls checks.
type PoolTLS struct {
	// SNI is the server name sent and verified; empty sends none and
	// verifies the certificate against the backend's IP address.
	SNI string
	// Verify checks the backend's certificate chain and name (the
	// default); false accepts any certificate.
	Verify bool
	// CAFile holds the CAs backend certificates are verified against;
	// empty means the system's roots.
	CAFile string
	// ClientCert, if its files are set, is presented to backends that
	// ask for a client certificate (mutual TLS).
	ClientCert certs.Pair
	// ALPN are the protocols offered, in order: "h2" and "http/1.1"
	// (the default, both), or either alone.
	ALPN []string
}

var poolTLSKeys = []string{"sni", "verify", "ca_file", "cert_file", "key_file", "alpn"}

// poolTLS reads a pool's tls table, nil if it has none, and makes the
// pool's https and tls checks share it.
func (d *decoder) poolTLS(pt *table, p *Pool) {
	t := pt.table("tls")
	if t == nil {
		return
	}
	t.allow(poolTLSKeys...)
	c := &PoolTLS{Verify: true, ALPN: []string{"h2", "http/1.1"}}
	t.str2("sni", &c.SNI)
	t.boolean("verify", &c.Verify)
	if t.str2("ca_file", &c.CAFile) {
		c.CAFile = d.path(c.CAFile)
		if _, err := health.LoadCAFile(c.CAFile); err != nil {
			t.errorf("ca_file", "%v", err)
		}
		if !c.Verify {
			t.errorf("ca_file", "is used only with verify = true")
		}
	}
	if t.has("cert_file") || t.has("key_file") {
		t.required("cert_file", "key_file")
		if t.str2("cert_file", &c.ClientCert.CertFile) && t.str2("key_file", &c.ClientCert.KeyFile) {
			c.ClientCert = certs.Pair{CertFile: d.path(c.ClientCert.CertFile), KeyFile: d.path(c.ClientCert.KeyFile)}
			if _, err := certs.LoadClient(c.ClientCert); err != nil {
				t.errorf("cert_file", "%v", err)
			}
		}
	}
	if t.has("alpn") {
		c.ALPN = nil
		for _, s := range t.stringList("alpn") {
			if s != "h2" && s != "http/1.1" {
				t.errorf("alpn", "unknown protocol %s: want \"h2\" or \"http/1.1\"", quote(s))
				continue
			}
			c.ALPN = append(c.ALPN, s)
		}
	}
	if p.H2C {
		pt.errorf("h2c", "is HTTP/2 over cleartext, which a pool with [%s] does not speak: its alpn offers h2", t.path)
	}
	p.TLS = c
}

// parsedPool returns the pool parsed with the given name, or nil.
func (d *decoder) parsedPool(name string) *Pool {
	for i := range d.parsed {
		if d.parsed[i].Name == name {
			return &d.parsed[i]
		}
	}
	return nil
}

// shareTLS makes a pool's https and tls checks use its tls table's
// settings, so that checks and traffic agree; setting them twice is an
// error. An http check would speak cleartext to TLS backends.
func (pt *table) shareTLS(p *Pool) {
	if p.TLS == nil || p.Health == nil {
		return
	}
	ht := pt.table("health")
	if ht == nil {
		return
	}
	switch p.Health.Kind {
	case CheckHTTP:
		ht.errorf("kind", "the pool's backends speak TLS ([%s.tls]): use kind = \"https\"", pt.path)
	case CheckHTTPS, CheckTLS:
		for _, k := range []string{"sni", "verify", "ca_file"} {
			if ht.has(k) {
				ht.errorf(k, "is set in [%s.tls], which this check shares", pt.path)
			}
		}
		h := p.Health
		h.SNI, h.Verify, h.CAFile, h.ClientCert = p.TLS.SNI, p.TLS.Verify, p.TLS.CAFile, p.TLS.ClientCert
	}
}
