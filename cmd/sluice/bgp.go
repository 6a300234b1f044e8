package main

import (
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"time"

	"sluice/config"
	"sluice/internal/admin"
	"sluice/internal/bgp"
)

// announce puts in's announce lists in force on the host's BGP speaker,
// starting it with the first configuration that has [bgp]. The speaker
// outlives reloads (GoBGP cannot be restarted in a process); a reload
// that changes [bgp] itself is warned about and takes effect on restart.
func (d *daemon) announce(cfg *config.Config, in *instance, log *slog.Logger) error {
	if d.bgp == nil && cfg.BGP != nil {
		s, err := bgp.New(speakerOptions(cfg.BGP, d.base))
		if err == nil {
			err = s.Start()
		}
		if err != nil {
			return fmt.Errorf("bgp: %w", err)
		}
		d.bgp, d.bgpCfg = s, cfg.BGP
	}
	if d.bgp == nil {
		return nil
	}
	if !reflect.DeepEqual(cfg.BGP, d.bgpCfg) {
		log.Warn("bgp settings kept as they were: [bgp] changes take effect on restart (announce lists do now)")
	}
	var routes []bgp.Route
	for _, lc := range cfg.Listeners {
		l := in.lns[keyOf(lc)]
		for _, p := range lc.Announce {
			routes = append(routes, bgp.Route{Listener: lc.Name, Prefix: p, Ready: l.ready})
		}
	}
	d.bgp.SetRoutes(routes)
	return nil
}

// ready reports whether l can serve: it is serving and its pool (an HTTP
// listener's default pool, if any) has a backend up.
func (l *live) ready() bool {
	select {
	case <-l.done:
		return false
	default:
	}
	return l.pool == nil || l.pool.Unavailable() == ""
}

func speakerOptions(c *config.BGP, log *slog.Logger) bgp.Options {
	o := bgp.Options{LocalAS: c.LocalAS, RouterID: c.RouterID, Communities: c.Communities,
		MED: c.MED, SendMED: c.HasMED, Logger: log}
	for _, p := range c.Peers {
		o.Peers = append(o.Peers, bgp.Peer{Addr: p.Address, Port: p.Port, AS: p.AS, Password: p.Password,
			HoldTime: p.HoldTime, ConnectRetry: p.ConnectRetry})
	}
	return o
}

// adminBGP is the speaker for the admin interface: nil without one.
func (d *daemon) adminBGP() admin.BGP {
	if d.bgp == nil {
		return nil
	}
	return d.bgp
}

// withdrawFirst is the start of a shutdown with BGP: every prefix is
// withdrawn while the listeners still accept, then the routers get
// withdraw_delay to move new connections to other hosts before the drain
// begins. It reports whether a second signal came meanwhile (then the
// caller closes at once).
func (d *daemon) withdrawFirst(sigs <-chan os.Signal, log *slog.Logger) (hurry bool) {
	d.mu.Lock()
	s, c := d.bgp, d.bgpCfg
	d.mu.Unlock()
	if s == nil {
		return false
	}
	s.WithdrawAll()
	log.Info("bgp: every prefix withdrawn; waiting before the drain", slog.Duration("withdraw_delay", c.WithdrawDelay))
	t := time.NewTimer(c.WithdrawDelay)
	defer t.Stop()
	select {
	case <-t.C:
		return false
	case <-sigs:
		log.Warn("second signal: closing connections now")
		return true
	}
}

// stopBGP closes the BGP sessions, after the drain.
func (d *daemon) stopBGP() {
	if d.bgp != nil {
		d.bgp.Stop()
	}
}
