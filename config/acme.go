package config

import (
	"net/url"
	"slices"
	"time"

	"sluice/internal/acmecert"
)

// ACME is a TLS listener's acme table: certificates for its names from an
// ACME CA, proved by TLS-ALPN-01 on the listener itself, or by HTTP-01 on
// the file's plain http listeners (HTTP01).
type ACME struct {
	// Names are the host names certificates are asked for; at least one,
	// none a wildcard or an IP address.
	Names []string
	// Email is the account's contact; "" for none.
	Email string
	// CA is the directory URL; acmecert.DefaultCA (Let's Encrypt) unless
	// set.
	CA string
	// Storage is the directory certificates and the account key are kept
	// in, relative to the configuration file's directory if not absolute.
	Storage string
	// RenewBefore is how long before expiry certificates are renewed;
	// zero: the lesser of 30 days and a third of the lifetime.
	RenewBefore time.Duration
	// HTTP01 is set when the file has a plain HTTP listener, which
	// answers the names' HTTP-01 validations: the CA may then prove a
	// name by HTTP-01 when TLS-ALPN-01 fails.
	HTTP01 bool
}

// acmeHTTP01 sets HTTP01 on every acme table when a listener can answer
// HTTP-01 validations: an http listener without TLS.
func acmeHTTP01(ls []Listener) {
	if !slices.ContainsFunc(ls, func(l Listener) bool { return l.Protocol == HTTP && l.TLS == nil }) {
		return
	}
	for _, l := range ls {
		if l.TLS != nil && l.TLS.ACME != nil {
			l.TLS.ACME.HTTP01 = true
		}
	}
}

// acme reads the tls table's acme key, nil if it has none.
func (d *decoder) acme(t *table) *ACME {
	at := t.table("acme")
	if at == nil {
		return nil
	}
	at.allow("names", "email", "ca", "storage", "renew_before")
	at.required("names", "storage")
	a := &ACME{CA: acmecert.DefaultCA}
	if at.has("names") {
		a.Names = at.stringList("names")
		if len(a.Names) == 0 {
			at.errorf("names", "must name at least one host")
		}
		if err := acmecert.CheckNames(a.Names); err != nil {
			at.errorf("names", "%v", err)
		}
	}
	at.str2("email", &a.Email)
	if at.str2("ca", &a.CA) {
		if u, err := url.Parse(a.CA); err != nil || u.Scheme != "https" || u.Host == "" {
			at.errorf("ca", "%s is not an https URL of an ACME directory", quote(a.CA))
		}
	}
	if at.str2("storage", &a.Storage) {
		a.Storage = d.path(a.Storage)
	}
	at.duration("renew_before", &a.RenewBefore, true)
	return a
}
