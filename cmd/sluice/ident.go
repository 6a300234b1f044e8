package main

import (
	"errors"
	"fmt"

	"sluice/config"
)

// notWired refuses a configuration that sets a key the proxies do not act
// on yet (issue 10's keys land in config before the listeners use them). A
// deny list or a trusted-proxy list that loads but does nothing would be
// worse than an error: each key leaves this list as its listener wiring
// lands.
func notWired(cfg *config.Config) error {
	var errs []error
	for _, l := range cfg.Listeners {
		for _, k := range []struct {
			set  bool
			name string
		}{
			{l.ProxyProtocol != 0, "proxy_protocol"},
			{len(l.Allow) > 0, "allow"},
			{len(l.Deny) > 0, "deny"},
			{l.MaxConnectionsPerClient > 0, "max_connections_per_client"},
			{!l.NewConnectionsPerClient.IsZero(), "new_connections_per_client"},
		} {
			if k.set {
				errs = append(errs, fmt.Errorf("listener %s: %s is accepted by check but not implemented by run yet", l.Name, k.name))
			}
		}
	}
	for _, p := range cfg.Pools {
		if p.SendProxy != 0 {
			errs = append(errs, fmt.Errorf("pool %s: send_proxy is accepted by check but not implemented by run yet", p.Name))
		}
	}
	return errors.Join(errs...)
}
