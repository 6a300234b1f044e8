package main

import (
	"crypto/tls"
	"log/slog"
	"slices"
	"strings"

	"sluice/config"
	"sluice/internal/acmecert"
	"sluice/internal/admin"
	"sluice/internal/certs"
	"sluice/internal/ticketkeys"
)

// http01 answers HTTP-01 validations on the plain HTTP listeners for the
// ACME managers of every TLS listener serving at the time: the CA asks
// port 80, whichever listener the certificate is for.
var http01 acmecert.HTTP01

// listenerCerts are a TLS listener's certificate sources: files (a store
// with its reload watcher) and ACME; either may be nil, not both. A nil
// *listenerCerts is a listener without TLS.
type listenerCerts struct {
	store   *certs.Store
	acme    *acmecert.Manager
	tickets *ticketkeys.Keys // nil: crypto/tls's own keys
}

// newListenerCerts loads c's files and sets up its ACME manager.
func newListenerCerts(c *config.ListenerTLS, log *slog.Logger) (*listenerCerts, error) {
	lc := &listenerCerts{}
	if len(c.Certificates) > 0 {
		store, err := certs.New(certs.Options{Pairs: c.Certificates, ReloadInterval: c.ReloadInterval,
			ExpiryWarning: c.ExpiryWarning, Logger: log})
		if err != nil {
			return nil, err
		}
		lc.store = store
	}
	if c.TicketKeyFile != "" || c.TicketRotation > 0 {
		k, err := ticketkeys.New(ticketkeys.Options{File: c.TicketKeyFile, ReloadInterval: c.ReloadInterval,
			Rotation: c.TicketRotation, Logger: log})
		if err != nil {
			return nil, err
		}
		lc.tickets = k
	}
	if a := c.ACME; a != nil {
		lc.acme = acmecert.New(acmecert.Options{Names: a.Names, Email: a.Email, CA: a.CA,
			Storage: a.Storage, RenewBefore: a.RenewBefore, Logger: log, HTTP01: a.HTTP01})
	}
	return lc, nil
}

// getCertificate is tls.Config.GetCertificate: ACME's names (and its
// validations) from ACME, the others from the files.
func (lc *listenerCerts) getCertificate() func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	switch {
	case lc.acme == nil:
		return lc.store.GetCertificate
	case lc.store == nil:
		return lc.acme.Wrap(nil)
	}
	return lc.acme.Wrap(lc.store.GetCertificate)
}

// offerACME adds the TLS-ALPN-01 protocol to protos when ACME is on: a
// validation that cannot negotiate it fails.
func (lc *listenerCerts) offerACME(protos []string) []string {
	if lc.acme == nil || slices.Contains(protos, acmecert.ALPNProto) {
		return protos
	}
	return append(protos, acmecert.ALPNProto)
}

// Covers is l7.Hosts: an ACME certificate covers its one name; the files'
// say for themselves.
func (lc *listenerCerts) Covers(serverName, host string) bool {
	if lc.acme != nil && lc.acme.Covers(&tls.ClientHelloInfo{ServerName: serverName}) {
		return strings.EqualFold(strings.TrimSuffix(serverName, "."), host)
	}
	return lc.store == nil || lc.store.Covers(serverName, host)
}

// Start starts the files' reload watcher, the session ticket keys'
// watcher or rotation, and ACME's first fetches; Stop
// stops them. Both take a nil receiver.
func (lc *listenerCerts) Start() {
	if lc == nil {
		return
	}
	if lc.store != nil {
		lc.store.Start()
	}
	if lc.tickets != nil {
		lc.tickets.Start()
	}
	if lc.acme != nil {
		http01.Add(lc.acme)
		lc.acme.Start()
	}
}

func (lc *listenerCerts) Stop() {
	if lc == nil {
		return
	}
	if lc.store != nil {
		lc.store.Stop()
	}
	if lc.tickets != nil {
		lc.tickets.Stop()
	}
	if lc.acme != nil {
		lc.acme.Stop()
		http01.Remove(lc.acme)
	}
}

// expiries are the listener's certificates for the admin metrics'
// expiry gauge, read at each scrape so that a renewal shows at once: the
// files', and ACME's from its storage.
func (lc *listenerCerts) expiries() []admin.Certificate {
	var out []admin.Certificate
	if lc.store != nil {
		for _, e := range lc.store.Expiries() {
			out = append(out, admin.Certificate{File: e.CertFile, NotAfter: e.NotAfter})
		}
	}
	if lc.acme != nil {
		for _, e := range lc.acme.Expiries() {
			out = append(out, admin.Certificate{File: e.File, NotAfter: e.NotAfter})
		}
	}
	return out
}
