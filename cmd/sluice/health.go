package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"sync"
	"time"

	"sluice/config"
	"sluice/health"
	"sluice/internal/certs"
	"sluice/internal/pool"
	"sluice/internal/proxyheader"
)

// checks is the health checking of the running process: a monitor for
// the active checks and each pool's timed steps (slow start, the end of
// ejections). It outlives reloads: sync keeps the checkers whose settings
// did not change, so their verdicts and streaks go on.
type checks struct {
	monitor *health.Monitor

	mu      sync.Mutex // guards what follows; add and remove come from several goroutines
	obs     checkObserver
	specs   map[target]checkSpec              // what each checker was built from
	runs    map[*pool.Pool]context.CancelFunc // each pool's Run, once started
	started bool
	wg      sync.WaitGroup // the pools' Run
}

// checkSpec is what a checker was built from: a reload restarts it only
// if this changes.
type checkSpec struct {
	h   config.Health
	pre []byte
}

// checkObserver sees every backend's checks (the admin listener's
// metrics); its methods are called for backends added and removed.
type checkObserver interface {
	prober(p *pool.Pool, b *pool.Backend, pr health.Prober) health.Prober
	forget(p *pool.Pool, b *pool.Backend)
}

// newChecks builds the process's checks, reporting to obs. Nothing runs
// until start.
func newChecks(log *slog.Logger, obs checkObserver) *checks {
	return &checks{monitor: &health.Monitor{Logger: log}, obs: obs,
		specs: map[target]checkSpec{}, runs: map[*pool.Pool]context.CancelFunc{}}
}

// observe makes obs see the checks added from now on (a reload may add
// an [admin] table).
func (c *checks) observe(obs checkObserver) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.obs = obs
}

// sync makes the checkers and Runs match cfg's pools, the backends pools
// have now: a checker whose backend or settings are unchanged goes on, a
// changed one is restarted (its first result then sets the verdict
// alone), those of removed backends and pools stop.
func (c *checks) sync(cfg *config.Config, pools map[string]*pool.Pool) error {
	live := map[*pool.Pool]bool{}
	for _, pc := range cfg.Pools {
		p := pools[pc.Name]
		live[p] = true
		c.run(p)
		want := map[netip.AddrPort]*config.Health{}
		for _, bc := range pc.Backends {
			want[bc.Address] = bc.Health
		}
		pre := healthPreamble(pc.SendProxy)
		for _, b := range p.Backends() {
			h, ok := want[b.Addr]
			if !ok {
				h = pc.DiscoveredHealth(b.Addr)
			}
			c.mu.Lock()
			spec, running := c.specs[target{p, b}]
			c.mu.Unlock()
			if running && h != nil && reflect.DeepEqual(spec, checkSpec{*h, pre}) {
				continue
			}
			if running {
				c.remove(p, b)
			}
			if err := c.add(pc.Name, p, b, h, pre); err != nil {
				return err
			}
		}
	}
	c.mu.Lock()
	var stale []target
	for t := range c.specs {
		if !live[t.p] || t.b.Removed() {
			stale = append(stale, t)
		}
	}
	for p, cancel := range c.runs {
		if !live[p] {
			if cancel != nil {
				cancel()
			}
			delete(c.runs, p)
		}
	}
	c.mu.Unlock()
	for _, t := range stale {
		c.remove(t.p, t.b)
	}
	return nil
}

// run runs p's timed steps, once start has been called; nothing if it
// runs already.
func (c *checks) run(p *pool.Pool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.runs[p]; ok {
		return
	}
	c.runs[p] = nil
	if c.started {
		c.launch(p)
	}
}

// launch starts p's Run; the caller holds c.mu.
func (c *checks) launch(p *pool.Pool) {
	ctx, cancel := context.WithCancel(context.Background())
	c.runs[p] = cancel
	c.wg.Go(func() { p.Run(ctx) })
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
	c.mu.Lock()
	obs := c.obs
	c.specs[target{p, b}] = checkSpec{*h, pre}
	c.mu.Unlock()
	check := health.Check{
		Prober:   obs.prober(p, b, prober),
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
	c.mu.Lock()
	obs := c.obs
	delete(c.specs, target{p, b})
	c.mu.Unlock()
	obs.forget(p, b)
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

// firstChecksWait bounds how long start waits for the first checks: they
// start within a second, but a check's timeout may be long.
const firstChecksWait = 5 * time.Second

// start runs the checkers and the pools' timed steps, and waits (a second
// or so) for every backend's first check, so that serving starts with
// their states known. Meanwhile clients wait in the accept queue.
func (c *checks) start() {
	c.mu.Lock()
	c.started = true
	for p := range c.runs {
		c.launch(p)
	}
	c.mu.Unlock()
	c.monitor.Start()
	wait, cancelWait := context.WithTimeout(context.Background(), firstChecksWait)
	defer cancelWait()
	c.monitor.WaitFirst(wait)
}

// stop stops and joins everything start started.
func (c *checks) stop() {
	c.monitor.Stop()
	c.mu.Lock()
	for _, cancel := range c.runs {
		if cancel != nil {
			cancel()
		}
	}
	c.mu.Unlock()
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
