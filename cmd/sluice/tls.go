package main

import (
	"crypto/tls"
	"log/slog"

	"sluice/config"
	"sluice/health"
	"sluice/internal/certs"
)

// listenerTLS builds a listener's TLS configuration and its certificate
// store, whose reload watcher the listener's serve function runs; nil,
// nil if the listener has no TLS.
func listenerTLS(lc config.Listener, log *slog.Logger) (*tls.Config, *certs.Store, error) {
	c := lc.TLS
	if c == nil {
		return nil, nil, nil
	}
	store, err := certs.New(certs.Options{Pairs: c.Certificates, ReloadInterval: c.ReloadInterval,
		ExpiryWarning: c.ExpiryWarning, Logger: log.With(slog.String("listener", lc.Name))})
	if err != nil {
		return nil, nil, err
	}
	cfg := &tls.Config{
		GetCertificate:   store.GetCertificate,
		MinVersion:       c.MinVersion,
		CurvePreferences: c.Curves,
		ClientAuth:       c.ClientAuth,
		// Session tickets are on, with keys crypto/tls makes and
		// rotates itself (a new one daily, each valid a week).
	}
	if c.ClientCAFile != "" {
		if cfg.ClientCAs, err = health.LoadCAFile(c.ClientCAFile); err != nil {
			return nil, nil, err
		}
	}
	return cfg, store, nil
}
