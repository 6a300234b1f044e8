package main

import (
	"log/slog"

	"sluice/config"
	"sluice/internal/tlsterm"
	"sluice/l4"
)

// tcpTLS sets a TCP listener's Terminate and BackendStart hooks when it
// has [tls] or its pool has: TLS ended at the listener (with a
// PostgreSQL SSLRequest first for starttls = "postgres", after MySQL's
// greeting for "mysql"), TLS spoken to the backends. It returns the
// certificate sources whose reload watcher and ACME manager the listener
// runs, if any.
func tcpTLS(srv *l4.Server, lc config.Listener, pc *config.Pool, log *slog.Logger) (*listenerCerts, error) {
	var store *listenerCerts
	if lc.TLS != nil {
		cfg, st, err := listenerTLS(lc, log)
		if err != nil {
			return nil, err
		}
		store = st
		cfg.NextProtos = st.offerACME(lc.TLS.ALPN)
		srv.HandshakeTimeout = lc.TLS.HandshakeTimeout
		switch lc.TLS.StartTLS {
		case config.StartTLSMySQL:
			// Set as BackendStart too, below: the backend's
			// greeting comes first.
			srv.Terminate = &tlsterm.MySQL{Config: cfg, RequireTLS: lc.TLS.RequireTLS}
		case config.StartTLSPostgres:
			srv.Terminate = &tlsterm.Postgres{Config: cfg, RequireTLS: lc.TLS.RequireTLS}
		default:
			srv.Terminate = tlsterm.TLS{Config: cfg}
		}
	}
	my, _ := srv.Terminate.(*tlsterm.MySQL)
	if my != nil {
		srv.BackendStart = my
	}
	if pc == nil || pc.TLS == nil {
		return store, nil
	}
	cfg, err := poolTLS(pc.TLS)
	if err != nil {
		return nil, err
	}
	// The pool's alpn is for HTTP listeners (h2, http/1.1); a TCP
	// backend is offered none, or PostgreSQL's own.
	cfg.NextProtos = nil
	if srv.Terminate == nil {
		srv.Terminate = tlsterm.Plain{}
	}
	switch {
	case my != nil:
		my.Backend = cfg
	case lc.TLS != nil && lc.TLS.StartTLS == config.StartTLSPostgres:
		cfg.NextProtos = []string{"postgresql"}
		srv.BackendStart = tlsterm.PostgresBackend{Config: cfg}
	default:
		srv.BackendStart = tlsterm.BackendTLS{Config: cfg}
	}
	return store, nil
}
