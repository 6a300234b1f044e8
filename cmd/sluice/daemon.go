package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"sluice/config"
	"sluice/internal/admin"
	"sluice/internal/bgp"
	"sluice/internal/pool"
	"sluice/internal/proxyheader"
	"sluice/l4"
	"sluice/l4/udp"
)

// daemon is sluice running: the configuration in force (an instance) and
// what outlives it across reloads: the pools by name (and with them their
// backends' state), the health checks, the file descriptor cap, the
// metrics, and the proxies a reload retired that still drain.
//
// A reload (apply) builds the next instance next to the running one and
// swaps: a listener whose name, protocol and address stay keeps its
// sockets, so no connection is refused and none waiting in an accept
// queue is lost.
type daemon struct {
	base  *slog.Logger                   // before the admin metrics' tap
	load  func() (*config.Config, error) // reads and checks the file; nil: no reloads
	fdCap *l4.Limiter
	sd    notifier // systemd's notify socket, if any
	up    upgrader // the binary upgrade's state (upgrade.go)

	mu      sync.Mutex // serialises reloads and the shutdown
	in      *instance
	pools   map[string]*pool.Pool
	caches  caches // the HTTP caches routes name
	checks  *checks
	downs   *downs
	later   *laterCloses
	metrics *admin.Metrics // nil until a configuration has [admin]
	closed  bool
	bgp     *bgp.Speaker // nil until a configuration has [bgp]
	bgpCfg  *config.BGP  // the [bgp] it was started with

	drainWait atomic.Int64 // the drain timeout in force, for OnAdmin callbacks (no d.mu)

	// retire ends when the process shuts down: the proxies a reload
	// replaced drain their connections until then, or until they end.
	retire     context.Context
	stopRetire context.CancelFunc
	serving    sync.WaitGroup // every proxy's Serve and retired Shutdown
}

// instance is one configuration in force: its proxies by listener, its
// DNS watchers, its admin listener.
type instance struct {
	cfg   *config.Config
	log   *slog.Logger
	lns   map[listenerKey]*live
	disc  *discovery
	admin *adminSide
}

// listenerKey names a listener across reloads: one whose key stays keeps
// its sockets.
type listenerKey struct {
	name  string
	proto config.Protocol
	bind  netip.AddrPort
}

func keyOf(lc config.Listener) listenerKey {
	return listenerKey{lc.Name, lc.Protocol, lc.Bind}
}

// live is a listener's proxy, serving.
type live struct {
	opened
	lc    config.Listener
	hooks poolHooks     // what of its pool's settings its hooks read
	pool  *pool.Pool    // for TCP, its pool
	done  chan struct{} // closed when Serve has returned
}

// start builds the pools, opens every listener, and only then starts
// serving, so a bind failure leaves nothing half-started.
func start(cfg *config.Config, log *slog.Logger) (*daemon, error) {
	return startOn(cfg, log, nil, nil)
}

// startOn is start on the sockets an upgrade's old process passed, if
// inh is not nil: the listeners and the admin listener take those of
// their keys, and open new ones only for the rest. setup, if not nil,
// fills in the daemon's fields (how to reload, systemd, the binary)
// before the configuration is applied: the admin API may call on them as
// soon as it serves.
func startOn(cfg *config.Config, log *slog.Logger, inh *inherited, setup func(*daemon)) (*daemon, error) {
	fdCap, fdLimit, err := fdLimiter(cfg)
	if err != nil {
		return nil, err
	}
	if fdCap != nil {
		log.Info("connections capped by the file descriptor limit",
			slog.Uint64("fd_limit", fdLimit), slog.Int("max_connections", fdCap.Max()))
	}
	warnUDPSessions(cfg, fdLimit, log)
	d := &daemon{base: log, fdCap: fdCap, pools: map[string]*pool.Pool{}, downs: newDowns(),
		later: newLaterCloses(log)}
	d.checks = newChecks(log, (*adminSide)(nil))
	d.retire, d.stopRetire = context.WithCancel(context.Background())
	d.up = upgrader{inherit: inh, done: make(chan struct{})}
	if setup != nil {
		setup(d)
	}
	// Under the lock a reload or upgrade through the admin API takes: it
	// may come as soon as the admin listener serves, before apply returns.
	d.mu.Lock()
	err = d.apply(cfg)
	d.up.inherit = nil
	d.mu.Unlock()
	if err != nil {
		d.stopRetire()
		d.checks.stop()
		return nil, err
	}
	return d, nil
}

// apply puts cfg in force: at start, or on a reload next to the running
// configuration. Sockets are opened (or shared) first, so that a bind
// failure changes nothing; then pools are updated, proxies built, and the
// new proxies serve before the replaced ones stop accepting.
func (d *daemon) apply(cfg *config.Config) error {
	prev := d.in
	logWarnings(cfg, d.base)
	adm, log := newAdmin(cfg, d.base, d.metrics)
	socks, err := d.sockets(cfg, prev, log)
	if err != nil {
		return err
	}
	adminLn, err := adm.listener(prev.adminSide(), d.up.inherit)
	if err != nil {
		socks.close()
		return err
	}
	disc := newDiscovery(cfg, d.later, log)
	removed, err := d.updatePools(cfg, disc, log)
	if err == nil {
		d.checks.observe(adm)
		err = d.checks.sync(cfg, d.pools)
	}
	if err != nil {
		socks.close()
		if adminLn != nil {
			adminLn.Close()
		}
		return err
	}
	d.caches.update(cfg)
	in := &instance{cfg: cfg, log: log, lns: map[listenerKey]*live{}, disc: disc, admin: adm}
	var all []opened
	for _, lc := range cfg.Listeners {
		l := socks.kept[keyOf(lc)]
		if l == nil {
			if l, err = d.build(cfg, lc, socks, log); err == nil {
				adm.count(l.srv, lc.Name)
			} else {
				// Read files were checked before the pools changed:
				// this is not expected.
				socks.close()
				if adminLn != nil {
					adminLn.Close()
				}
				return fmt.Errorf("listener %s: %w", lc.Name, err)
			}
		}
		in.lns[keyOf(lc)] = l
		all = append(all, l.opened)
	}
	for _, lc := range cfg.Listeners {
		if socks.retune[keyOf(lc)] {
			d.retune(lc, cfg.Pool(lc.Pool), in.lns[keyOf(lc)], log)
		}
	}
	adm.open(cfg, d.pools, all, adminLn)
	adm.withCaches(d.caches.byName)
	if prev == nil {
		d.checks.start()
	}
	d.swap(prev, in)
	disc.start(d.pools, d.downs, d.checks)
	for name, bs := range removed {
		d.later.after(cfg.DrainTimeout, name, bs, msgRemoved, (*pool.Backend).Removed, d.downs.closer(d.pools[name]))
	}
	if err := d.announce(cfg, in, log); err != nil {
		// Serving on without BGP announces nothing, so the routers
		// send this host no traffic: safe, and said loudly.
		log.Error("starting bgp", slog.String("error", err.Error()))
	}
	adm.setBGP(d.adminBGP())
	adm.serve(newEdits(cfg, d.pools, d.downs, d.checks, disc, log), d.reload, d.upgrade)
	if adm != nil {
		d.metrics = adm.metrics
	}
	d.in = in
	d.drainWait.Store(int64(cfg.DrainTimeout))
	return nil
}

// errShutDown is a reload's error once sluice is shutting down.
var errShutDown = errors.New("reloading: sluice is shutting down")

// reload reads and checks the configuration file and, if it has no
// errors, puts it in force. With any error the running configuration
// stays as it is, and every error is logged, one line each, as sluice
// check prints them.
func (d *daemon) reload() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errShutDown
	}
	if d.up.to != 0 {
		return fmt.Errorf("reloading: %w (pid %d)", errUpgraded, d.up.to)
	}
	if d.load == nil {
		return errors.New("reloading: this sluice runs no configuration file")
	}
	d.base.Info("reloading the configuration")
	d.notify(reloading())
	cfg, err := d.load()
	if err == nil {
		err = d.apply(cfg)
	}
	// Ready again either way: the old configuration serves on.
	d.notify("READY=1")
	if d.metrics != nil {
		d.metrics.Reloaded(err == nil)
	}
	if err != nil {
		for _, line := range admin.ErrorLines(err) {
			d.base.Error("reload failed, configuration unchanged", slog.String("error", line))
		}
		return err
	}
	d.base.Info("configuration reloaded", slog.String("file", cfg.File))
	return nil
}

// notify sends state to systemd; a failure is logged, nothing more.
func (d *daemon) notify(state string) {
	if err := d.sd.send(state); err != nil {
		d.base.Warn("systemd notification", slog.String("error", err.Error()))
	}
}

// adminSide returns in's admin listener, nil for no instance.
func (in *instance) adminSide() *adminSide {
	if in == nil {
		return nil
	}
	return in.admin
}

// updatePools updates the pools that stay (their backends' state carried
// by address), creates the new ones, and forgets those cfg no longer has
// (the proxies that drain keep using them). It returns, by pool, the
// backends removed, whose connections are closed after the drain timeout.
func (d *daemon) updatePools(cfg *config.Config, disc *discovery, log *slog.Logger) (map[string][]*pool.Backend, error) {
	removed := map[string][]*pool.Backend{}
	pools := make(map[string]*pool.Pool, len(cfg.Pools))
	var errs []error
	for _, pc := range cfg.Pools {
		o := poolOptions(pc, log)
		p := d.pools[pc.Name]
		switch {
		case p != nil && pc.Discover != nil && d.in.discovered(pc.Name):
			// It has the backends DNS gave until its watcher's next
			// answer, not those of a fresh lookup that might fail.
			o.Backends = backendOptions(p)
		default:
			disc.resolve(pc, &o)
		}
		if p == nil {
			np, err := pool.New(o)
			if err != nil {
				errs = append(errs, fmt.Errorf("pool %s: %w", pc.Name, err))
				continue
			}
			d.downs.watch(np)
			np.OnAdmin(func(b *pool.Backend, a pool.Admin) { d.drainedByHand(np, b, a) })
			p = np
		} else {
			dropped := d.droppedEdits(pc, p)
			ch, err := p.Update(o)
			if err != nil {
				errs = append(errs, fmt.Errorf("pool %s: %w", pc.Name, err))
				continue
			}
			removed[pc.Name] = ch.Removed
			for _, e := range dropped {
				log.Warn("reload dropped a change made at run time", slog.String("pool", pc.Name),
					slog.String("backend", e.backend.String()), slog.String("change", e.what))
			}
		}
		d.downs.closeOnDown(p, pc.OnDown == config.OnDownClose)
		d.downs.setRate(p, pc.DrainRate)
		pools[pc.Name] = p
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	d.pools = pools
	return removed, nil
}

// drainedByHand closes, after the drain timeout, the connections left on
// b, set to drain by hand (the admin API), at its pool's drain_rate.
// Without a drain_rate they go on until they end, as a drain always did;
// a backend enabled again (or removed, which has its own close) before
// then keeps them.
func (d *daemon) drainedByHand(p *pool.Pool, b *pool.Backend, a pool.Admin) {
	if a != pool.Drain || !d.downs.pacer(p).Paced() {
		return
	}
	still := func(b *pool.Backend) bool {
		return b.State() == pool.StateDraining && !b.Removed() && d.downs.pacer(p).Paced()
	}
	d.later.after(time.Duration(d.drainWait.Load()), p.Name(), []*pool.Backend{b}, msgDrained, still, d.downs.closer(p))
}

// droppedEdits returns the run-time changes to pool p that reloading it
// as pc undoes: none for a pool whose backends come from DNS, whose
// changes are not edits.
func (d *daemon) droppedEdits(pc config.Pool, p *pool.Pool) []droppedEdit {
	if d.in == nil || pc.Discover != nil || d.in.discovered(pc.Name) {
		return nil
	}
	old := d.in.cfg.Pool(pc.Name)
	if old == nil {
		return nil
	}
	return droppedEdits(old.Backends, pc.Backends, p.Backends())
}

// discovered says whether in's pool name takes its backends from DNS.
func (in *instance) discovered(name string) bool {
	return in != nil && in.disc.pools[name] != nil
}

// backendOptions returns p's backends as options for Update.
func backendOptions(p *pool.Pool) []pool.BackendOptions {
	var bs []pool.BackendOptions
	for _, b := range p.Backends() {
		bs = append(bs, pool.BackendOptions{Addr: b.Addr, Weight: b.Weight(), Backup: b.Backup()})
	}
	return bs
}

// build builds lc's proxy on the sockets socks has for it.
func (d *daemon) build(cfg *config.Config, lc config.Listener, socks *sockets, log *slog.Logger) (*live, error) {
	pc := cfg.Pool(lc.Pool)
	p := d.pools[lc.Pool]
	l := &live{lc: lc, pool: p}
	l.hooks = hooksOf(pc)
	key := keyOf(lc)
	var err error
	switch lc.Protocol {
	case config.UDP:
		l.opened = openUDP(lc, socks.udp[key], pc, p, log)
		l.srv.(*udp.Server).Held = socks.held[key]
	case config.HTTP:
		l.opened, err = openHTTP(cfg, lc, socks.tcp[key], socks.tls[key], d.pools, d.caches.byName, log)
	default:
		l.opened, err = openTCP(lc, socks.tcp[key], pc, d.pools, d.fdCap, d.downs.pacer(p), log)
	}
	return l, err
}

// retune puts the settings cfg gives l, a running UDP proxy kept by a
// reload, in force: its listener's (timeouts, limits, PROXY, ACLs, pool)
// and its pool's hooks. Live sessions stay on their backends.
func (d *daemon) retune(lc config.Listener, pc *config.Pool, l *live, log *slog.Logger) {
	srv, ok := l.srv.(*udp.Server)
	if !ok {
		return
	}
	hooks := &udp.Server{}
	udpHooks(hooks, lc, pc)
	p := d.pools[lc.Pool]
	srv.Reconfigure(udp.Settings{Pool: p, SessionTimeout: lc.SessionTimeout, Responses: lc.Responses,
		MaxSessions: lc.MaxSessions, Preamble: hooks.Preamble, Admit: hooks.Admit, BackendPreamble: hooks.BackendPreamble})
	lc.Sockets = l.lc.Sockets // what it runs with, for the next reload to compare
	l.lc, l.hooks, l.pool = lc, hooksOf(pc), p
	log.Info("listener settings applied", slog.String("listener", lc.Name))
}

// swap starts serving in's new proxies, then retires the proxies of prev
// that in does not keep: those of removed listeners drain for the drain
// timeout; those replaced by a new proxy on the same sockets stop
// accepting and keep their connections to their end, or to shutdown.
func (d *daemon) swap(prev, in *instance) {
	for key, l := range in.lns {
		if prev != nil && prev.lns[key] == l {
			continue
		}
		l.done = make(chan struct{})
		if s, ok := l.srv.(*l4.Server); ok {
			d.downs.add(l.pool, s)
		}
		d.serving.Go(func() {
			defer close(l.done)
			l.serve()
			if s, ok := l.srv.(*l4.Server); ok {
				d.downs.remove(l.pool, s)
			}
		})
		in.log.Info("listening", slog.String("listener", l.name), slog.String("protocol", l.proto.String()),
			slog.String("bind", l.bind), slog.Int("sockets", l.sockets))
	}
	if prev == nil {
		return
	}
	for key, l := range prev.lns {
		next := in.lns[key]
		switch {
		case next == l:
			continue
		case next == nil:
			in.log.Info("listener removed: draining", slog.String("listener", l.name),
				slog.Duration("drain_timeout", in.cfg.DrainTimeout))
			d.serving.Go(func() { d.drain(l, in.cfg) })
		default:
			d.serving.Go(func() { l.srv.Shutdown(d.retire) })
		}
	}
	prev.disc.stop()
	if a := prev.admin; a != nil {
		// Not waited for here: the reload may be one of its requests.
		d.serving.Go(a.shutdown)
	}
}

// drain shuts a removed listener's proxy down: no new connections, the
// live ones closed after the drain timeout (or at shutdown).
func (d *daemon) drain(l *live, cfg *config.Config) {
	ctx, cancel := context.WithTimeout(d.retire, cfg.DrainTimeout)
	defer cancel()
	l.srv.Shutdown(ctx)
}

// closeNow ends the drain at once: every TCP proxy's connections, however
// paced, are closed (a second signal). It takes no lock: shutdown holds
// d.mu while it drains.
func (d *daemon) closeNow() {
	d.downs.closeAll()
}

// drainTimeout is the drain timeout of the configuration in force.
func (d *daemon) drainTimeout() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.in.cfg.DrainTimeout
}

// shutdown drains every proxy until ctx ends, then closes what is left.
func (d *daemon) shutdown(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.up.to == 0 {
		// After an upgrade the service goes on in the new process.
		d.notify("STOPPING=1")
	}
	in := d.in
	if d.up.to != 0 {
		// Handed over: the new process accepts on this same admin
		// socket. Accepting here too through the drain would send
		// part of the API calls and scrapes to a process that no
		// longer serves (and refuses reloads). Not waited for: the
		// upgrade may be one of its requests, finishing its answer.
		d.serving.Go(in.admin.shutdown)
	}
	// The backend sets stay as they are through the drain.
	in.disc.stop()
	d.later.stop()
	var mu sync.Mutex
	var err error
	for _, l := range in.lns {
		d.serving.Go(func() {
			e := l.srv.Shutdown(ctx)
			mu.Lock()
			err = errors.Join(err, e)
			mu.Unlock()
		})
	}
	// What reloads retired drains as long as the rest: until its
	// connections end or ctx does.
	stop := context.AfterFunc(ctx, d.stopRetire)
	d.serving.Wait()
	stop()
	d.stopRetire()
	in.admin.shutdown()
	d.caches.close()
	// Checks run through the drain: a backend going down still moves
	// (or, with on_down close, ends) what is left.
	d.checks.stop()
	return err
}

// sockets are the listening sockets of a configuration about to be
// applied: those of kept proxies, those shared with the proxy they
// replace, and new ones.
type sockets struct {
	kept   map[listenerKey]*live
	tcp    map[listenerKey][]*net.TCPListener
	udp    map[listenerKey][]*net.UDPConn
	tls    map[listenerKey]httpTLS // HTTP listeners' files, read before anything changes
	retune map[listenerKey]bool    // kept UDP proxies whose settings change
	held   map[listenerKey]bool    // UDP listeners on an upgrade's sockets, held until it hands over
	opened []func()                // closes what was opened or shared, if the reload fails
	inh    *inherited              // an upgrade's sockets, taken before new ones are opened
}

func (s *sockets) close() {
	for _, c := range s.opened {
		c()
	}
}

// sockets gets cfg's listeners their sockets: a proxy whose listener and
// pool hooks did not change is kept as it is; a TCP or HTTP listener whose
// settings changed gets copies of its sockets (the same sockets, so
// their accept queues, under new descriptors) for a new proxy; any other
// listener opens new ones.
func (d *daemon) sockets(cfg *config.Config, prev *instance, log *slog.Logger) (*sockets, error) {
	s := &sockets{kept: map[listenerKey]*live{}, tcp: map[listenerKey][]*net.TCPListener{},
		udp: map[listenerKey][]*net.UDPConn{}, tls: map[listenerKey]httpTLS{}, retune: map[listenerKey]bool{},
		held: map[listenerKey]bool{}, inh: d.up.inherit}
	for _, lc := range cfg.Listeners {
		key := keyOf(lc)
		var old *live
		if prev != nil {
			old = prev.lns[key]
		}
		err := s.get(cfg, lc, old, d.pools, log)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("listener %s: %w", lc.Name, err)
		}
	}
	return s, nil
}

// get gets lc its sockets, from old if it is lc's running proxy.
func (s *sockets) get(cfg *config.Config, lc config.Listener, old *live, pools map[string]*pool.Pool, log *slog.Logger) error {
	key := keyOf(lc)
	if old != nil && unchanged(cfg, lc, old, pools) {
		s.kept[key] = old
		return nil
	}
	switch lc.Protocol {
	case config.HTTP:
		t, err := prepareHTTP(cfg, lc, log)
		if err != nil {
			return err
		}
		s.tls[key] = t
	case config.TCP:
		// Its TLS files are read again when its proxy is built; this
		// makes a missing one fail the reload before anything changes.
		if _, err := tcpTLS(&l4.Server{}, lc, cfg.Pool(lc.Pool), log); err != nil {
			return err
		}
	}
	switch {
	case lc.Protocol == config.UDP && old != nil && len(old.udp) == lc.Sockets:
		// Two proxies reading one UDP socket would split a client's
		// datagrams between two sessions: the running one stays, and
		// takes the new settings (retune).
		s.kept[key] = old
		s.retune[key] = true
	case lc.Protocol == config.UDP && old != nil:
		log.Warn("a UDP listener's number of sockets changes on restart; its other settings are applied",
			slog.String("listener", lc.Name), slog.Int("sockets", len(old.udp)))
		s.kept[key] = old
		s.retune[key] = true
	case lc.Protocol == config.UDP:
		conns, inherited, err := s.inh.listenUDP(lc)
		if err != nil {
			return err
		}
		s.udp[key] = conns
		s.held[key] = inherited
		s.opened = append(s.opened, func() { closeAll(conns) })
	case old != nil && len(old.tcp) == lc.Sockets:
		lns, err := share(old.tcp)
		if err != nil {
			return err
		}
		s.tcp[key] = lns
		s.opened = append(s.opened, func() { closeAll(lns) })
	default:
		// New, or with another number of sockets: SO_REUSEPORT lets
		// the new set bind next to the old one.
		lns, err := s.inh.listenTCP(lc)
		if err != nil {
			return err
		}
		s.tcp[key] = lns
		s.opened = append(s.opened, func() { closeAll(lns) })
	}
	return nil
}

// unchanged says whether old, the running proxy of lc's listener, can go
// on as it is: same settings and same pool. HTTP proxies read the pools'
// settings of every route, so they are always rebuilt (on the same
// sockets).
func unchanged(cfg *config.Config, lc config.Listener, old *live, pools map[string]*pool.Pool) bool {
	if lc.Protocol == config.HTTP || !reflect.DeepEqual(lc, old.lc) || pools[lc.Pool] != old.pool {
		return false
	}
	return reflect.DeepEqual(hooksOf(cfg.Pool(lc.Pool)), old.hooks)
}

// poolHooks is what a TCP or UDP proxy's hooks read of its pool's
// settings: a change of them needs a new proxy.
type poolHooks struct {
	sendProxy proxyheader.Versions
	tls       *config.PoolTLS
	keepAlive config.KeepAlive // probes to the backends, set at each connect
}

func hooksOf(pc *config.Pool) poolHooks {
	if pc == nil {
		return poolHooks{}
	}
	return poolHooks{pc.SendProxy, pc.TLS, pc.KeepAlive}
}

// share returns copies of lns: new descriptors of the same sockets. The
// old proxy closing its descriptors then leaves the sockets, and the
// connections queued on them, to the new one.
func share(lns []*net.TCPListener) ([]*net.TCPListener, error) {
	var out []*net.TCPListener
	for _, ln := range lns {
		f, err := ln.File()
		if err != nil {
			closeAll(out)
			return nil, fmt.Errorf("sharing listening socket %s: %w", ln.Addr(), err)
		}
		c, err := net.FileListener(f)
		f.Close()
		if err != nil {
			closeAll(out)
			return nil, fmt.Errorf("sharing listening socket %s: %w", ln.Addr(), err)
		}
		out = append(out, c.(*net.TCPListener))
	}
	return out, nil
}
