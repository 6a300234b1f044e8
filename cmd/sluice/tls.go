package main

import (
	"crypto/tls"
	"log/slog"

	"sluice/config"
	"sluice/health"
	"sluice/internal/certs"
	"sluice/internal/pool"
	"sluice/internal/sniroute"
	"sluice/l4"
)

// sniHooks routes a TCP listener's connections by the server name of
// their TLS ClientHello, when it has sni_routes.
func sniHooks(srv *l4.Server, lc config.Listener, pools map[string]*pool.Pool) {
	if len(lc.SNIRoutes) == 0 {
		return
	}
	routes := make([]sniroute.Route, len(lc.SNIRoutes))
	for i, r := range lc.SNIRoutes {
		routes[i] = sniroute.Route{Names: r.Names, Pool: pools[r.Pool]}
	}
	var def l4.Picker
	if p := pools[lc.Pool]; p != nil {
		def = p
	}
	srv.Preamble = sniroute.New(routes, def)
	srv.PreambleTimeout = lc.ClientHelloTimeout
	if srv.Pool == nil {
		// l4 requires a pool; without a default the router refuses
		// every connection it would reach.
		srv.Pool = routes[0].Pool
	}
}

// poolTLS builds the client TLS configuration a pool's backends are
// spoken to with; nil if the pool has no [tls].
func poolTLS(c *config.PoolTLS) (*tls.Config, error) {
	if c == nil {
		return nil, nil
	}
	cfg := &tls.Config{
		ServerName: c.SNI,
		// By request (verify = false): the backends' certificates are
		// not checked, only encrypted to.
		InsecureSkipVerify: !c.Verify,
		NextProtos:         c.ALPN,
		MinVersion:         tls.VersionTLS12,
	}
	var err error
	if c.CAFile != "" {
		if cfg.RootCAs, err = health.LoadCAFile(c.CAFile); err != nil {
			return nil, err
		}
	}
	if c.ClientCert.CertFile != "" {
		cert, err := certs.LoadClient(c.ClientCert)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg, nil
}

// listenerTLS builds a listener's TLS configuration and its certificate
// sources, whose reload watcher and ACME manager the listener's serve
// function runs; nil, nil if the listener has no TLS.
func listenerTLS(lc config.Listener, log *slog.Logger) (*tls.Config, *listenerCerts, error) {
	c := lc.TLS
	if c == nil {
		return nil, nil, nil
	}
	lcerts, err := newListenerCerts(c, log.With(slog.String("listener", lc.Name)))
	if err != nil {
		return nil, nil, err
	}
	cfg := &tls.Config{
		GetCertificate:   lcerts.getCertificate(),
		MinVersion:       c.MinVersion,
		CurvePreferences: c.Curves,
		ClientAuth:       c.ClientAuth,
	}
	// Session tickets are on, with the keys of ticket_key_file or
	// ticket_rotation, else with keys crypto/tls makes and rotates
	// itself (a new one daily, each valid a week).
	if lcerts.tickets != nil {
		lcerts.tickets.Apply(cfg)
	}
	if c.ClientCAFile != "" {
		if cfg.ClientCAs, err = health.LoadCAFile(c.ClientCAFile); err != nil {
			return nil, nil, err
		}
	}
	cfg.NextProtos = lcerts.offerACME(nil)
	return cfg, lcerts, nil
}
