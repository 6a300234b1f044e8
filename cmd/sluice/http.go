package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"

	"sluice/config"
	"sluice/internal/pool"
	"sluice/l7"
	"sluice/l7/cache"
	"sluice/l7/route"
)

// httpTLS is what an HTTP listener reads from files: its certificates
// and its pools' client certificates and CAs. A reload reads them before
// it changes anything, so that a missing file fails it whole.
type httpTLS struct {
	config *tls.Config
	store  *listenerCerts
}

// prepareHTTP reads lc's certificates and checks its pools' TLS files.
func prepareHTTP(cfg *config.Config, lc config.Listener, log *slog.Logger) (httpTLS, error) {
	tlsConfig, certStore, err := listenerTLS(lc, log)
	if err != nil {
		return httpTLS{}, err
	}
	if _, err := upstreams(cfg, lc, nil); err != nil {
		return httpTLS{}, err
	}
	return httpTLS{tlsConfig, certStore}, nil
}

// openHTTP builds an HTTP listener's reverse proxy on lns over the shared
// pools, with t from prepareHTTP.
func openHTTP(cfg *config.Config, lc config.Listener, lns []*net.TCPListener, t httpTLS, pools map[string]*pool.Pool,
	caches map[string]*cache.Cache, log *slog.Logger) (opened, error) {
	tlsConfig, certStore := t.config, t.store
	ups, err := upstreams(cfg, lc, pools)
	if err != nil {
		return opened{}, err
	}
	h := lc.HTTP
	srv := &l7.Server{
		Name:                     lc.Name,
		Routes:                   h.Routes,
		Upstreams:                ups,
		Caches:                   caches,
		Default:                  lc.Pool,
		TrustedProxies:           h.TrustedProxies,
		ReadHeaderTimeout:        h.ReadHeaderTimeout,
		IdleTimeout:              lc.IdleTimeout,
		ConnectTimeout:           lc.ConnectTimeout,
		ResponseTimeout:          h.ResponseTimeout,
		MaxHeaderBytes:           h.MaxHeaderBytes,
		MaxBodyBytes:             h.MaxBodyBytes,
		MaxURLBytes:              h.MaxURLBytes,
		MaxRequestsPerConnection: h.MaxRequestsPerConnection,
		RequestRate:              h.RequestsPerClient,
		RequestBurst:             h.RequestsPerClientBurst,
		MaxConnections:           lc.MaxConnections,
		FailStatuses:             h.FailStatuses,
		MaxIdlePerBackend:        h.MaxIdlePerBackend,
		BackendIdleTimeout:       h.BackendIdleTimeout,
		Logger:                   log,
		LogRequestLine:           cfg.Log.HTTPFormat != config.HTTPLogRecord, // see newLogger
	}
	serve := func() error { return srv.Serve(lns) }
	if tlsConfig == nil {
		srv.ACME = &http01
	}
	if tlsConfig != nil {
		srv.TLS, srv.Hosts, srv.ClientCertHeader = tlsConfig, certStore, lc.TLS.ClientCertHeader
		serve = func() error {
			// The reload watcher lives as long as the listener serves.
			certStore.Start()
			defer certStore.Stop()
			return srv.Serve(lns)
		}
	}
	return opened{srv: srv, serve: serve, close: func() { closeAll(lns) },
		name: lc.Name, proto: lc.Protocol, bind: lns[0].Addr().String(), sockets: len(lns), tcp: lns, certs: certStore}, nil
}

// upstreams returns the pools an HTTP listener forwards to: its default
// pool and those its routes name.
func upstreams(cfg *config.Config, lc config.Listener, pools map[string]*pool.Pool) (map[string]l7.Upstream, error) {
	ups := make(map[string]l7.Upstream)
	var err error
	add := func(name string) {
		if name == "" || err != nil {
			return
		}
		pc := cfg.Pool(name)
		u := l7.Upstream{Pool: pools[name], H2C: pc.H2C}
		if u.TLS, err = poolTLS(pc.TLS); err != nil {
			err = fmt.Errorf("pool %s: %w", name, err)
		}
		ups[name] = u
	}
	add(lc.Pool)
	for _, r := range lc.HTTP.Routes {
		if r.Kind == route.Forward {
			add(r.Pool)
		}
	}
	return ups, err
}
