package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"sluice/config"
	"sluice/health"
	"sluice/internal/certs"
	"sluice/internal/pool"
	"sluice/internal/proxyheader"
	"sluice/l4"
)

// checks is the health checking of one running configuration: a monitor
// for the active checks and each pool's timed steps (slow start, the end
// of ejections).
type checks struct {
	monitor *health.Monitor
	pools   []*pool.Pool
	obs     checkObserver
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// checkObserver sees every backend's checks (the admin listener's
// metrics); its methods are called for backends added and removed.
type checkObserver interface {
	prober(p *pool.Pool, b *pool.Backend, pr health.Prober) health.Prober
	forget(p *pool.Pool, b *pool.Backend)
}

// newChecks builds a checker for every backend of every pool with a
// [health] table, each prober passed through obs. Nothing runs until
// start.
func newChecks(cfg *config.Config, pools map[string]*pool.Pool, log *slog.Logger, obs checkObserver) (*checks, error) {
	c := &checks{monitor: &health.Monitor{Logger: log}, obs: obs}
	for _, pc := range cfg.Pools {
		p := pools[pc.Name]
		c.pools = append(c.pools, p)
		for i, bc := range pc.Backends {
			if err := c.add(pc.Name, p, p.Backends()[i], bc.Health, healthPreamble(pc.SendProxy)); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

// add checks backend b of pool p as h says, sending pre first (see
// healthPreamble); nil h means no checks.
func (c *checks) add(name string, p *pool.Pool, b *pool.Backend, h *config.Health, pre []byte) error {
	if h == nil {
		return nil
	}
	prober, err := newProber(h)
	if err != nil {
		return fmt.Errorf("pool %s: backend %s: %w", name, b.Addr, err)
	}
	check := health.Check{
		Prober:   c.obs.prober(p, b, prober),
		Addr:     h.Address,
		Interval: h.Interval,
		Timeout:  h.Timeout,
		Jitter:   h.Jitter,
		Rise:     h.Rise,
		Fall:     h.Fall,
		Preamble: pre,
	}
	return c.monitor.Add(check, target{p, b})
}

// remove stops checking backend b of pool p, which p no longer has; the
// checks of its other backends go on with their verdicts.
func (c *checks) remove(p *pool.Pool, b *pool.Backend) {
	c.monitor.Remove(target{p, b})
	c.obs.forget(p, b)
}

// healthPreamble is what the checks of a pool that sends PROXY headers send
// first: a header with no client in it (v2 LOCAL, v1 UNKNOWN), as HAProxy's
// check-send-proxy does, so a backend that requires headers takes the
// check for the proxy's own connection instead of refusing it.
func healthPreamble(v proxyheader.Versions) []byte {
	switch v {
	case proxyheader.V1:
		return proxyheader.AppendV1(nil, netip.AddrPort{}, netip.AddrPort{})
	case proxyheader.V2:
		return proxyheader.AppendV2(nil, &proxyheader.Header{Local: true})
	}
	return nil
}

// closeOnDown makes each TCP server close the connections of a backend
// that its pool's checks mark down, in pools with on_down = "close".
func closeOnDown(cfg *config.Config, pools map[string]*pool.Pool, servers []*l4.Server) {
	for _, pc := range cfg.Pools {
		if pc.OnDown != config.OnDownClose {
			continue
		}
		for _, s := range servers {
			if s.Pool == pools[pc.Name] {
				pools[pc.Name].OnDown(s.CloseBackend)
			}
		}
	}
}

// firstChecksWait bounds how long start waits for the first checks: they
// start within a second, but a check's timeout may be long.
const firstChecksWait = 5 * time.Second

// start runs the checkers and the pools' timed steps, and waits (a second
// or so) for every backend's first check, so that serving starts with
// their states known. Meanwhile clients wait in the accept queue.
func (c *checks) start() {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	for _, p := range c.pools {
		c.wg.Go(func() { p.Run(ctx) })
	}
	c.monitor.Start()
	wait, cancelWait := context.WithTimeout(ctx, firstChecksWait)
	defer cancelWait()
	c.monitor.WaitFirst(wait)
}

// stop stops and joins everything start started.
func (c *checks) stop() {
	c.monitor.Stop()
	if c.cancel != nil {
		c.cancel()
	}
	c.wg.Wait()
}

// target reports a backend's checks to its pool.
type target struct {
	p *pool.Pool
	b *pool.Backend
}

// SetHealth implements health.Target.
func (t target) SetHealth(up bool, reason string) { t.p.SetHealth(t.b, up, reason) }

// SetHealthStreak implements health.StreakTarget: the pool ends a passive
// ejection once rise checks have passed since it began.
func (t target) SetHealthStreak(up bool, reason string, passes, rise int) {
	t.p.ReportCheck(t.b, pool.CheckResult{Up: up, Reason: reason, Passes: passes, Rise: rise})
}

var _ health.StreakTarget = target{}

// newProber builds the prober a [health] table describes.
func newProber(h *config.Health) (health.Prober, error) {
	switch h.Kind {
	case config.CheckTCP:
		return health.TCP{}, nil
	case config.CheckSendExpect:
		return health.SendExpect{Send: []byte(h.Send), Expect: h.Expect, Regexp: h.ExpectRegex}, nil
	case config.CheckUDPSendExpect:
		return health.UDPSendExpect{Send: []byte(h.Send), Expect: h.Expect, Regexp: h.ExpectRegex}, nil
	case config.CheckHTTP, config.CheckHTTPS, config.CheckTLS:
		return tlsProber(h)
	case config.CheckRedis:
		return health.Redis{Username: h.Username, Password: h.Password, Role: h.Role}, nil
	case config.CheckPostgres:
		return health.Postgres{User: h.User, Password: h.Password, Database: h.Database, Role: h.Role}, nil
	case config.CheckMySQL:
		return health.MySQL{User: h.User, Password: h.Password, Database: h.Database, Role: h.Role}, nil
	case config.CheckDNS:
		return health.DNS{Name: h.Name, Type: h.Type}, nil
	}
	return nil, fmt.Errorf("unknown health check kind %v", h.Kind)
}

// tlsProber builds the http, https and tls probers, which may verify
// certificates against a CA file.
func tlsProber(h *config.Health) (health.Prober, error) {
	var t health.TLS
	t.SNI, t.Verify = h.SNI, h.Verify
	if h.CAFile != "" {
		roots, err := health.LoadCAFile(h.CAFile)
		if err != nil {
			return nil, err
		}
		t.RootCAs = roots
	}
	if h.ClientCert.CertFile != "" {
		c, err := certs.LoadClient(h.ClientCert)
		if err != nil {
			return nil, err
		}
		t.Certificates = []tls.Certificate{*c}
	}
	if h.Kind == config.CheckTLS {
		return t, nil
	}
	return health.HTTP{
		TLS: h.Kind == config.CheckHTTPS, Method: h.Method, Path: h.Path, Host: h.Host,
		StatusMin: h.StatusMin, StatusMax: h.StatusMax, Body: h.Body,
		SNI: t.SNI, Verify: t.Verify, RootCAs: t.RootCAs, Certificates: t.Certificates,
	}, nil
}
