package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"sluice/config"
	"sluice/health"
	"sluice/internal/admin"
	"sluice/internal/pool"
	"sluice/l4"
	"sluice/l4/udp"
	"sluice/l7"
)

// adminSide is the [admin] listener of one running configuration: its
// metrics, fed from the start, and its HTTP server, opened with the other
// listeners and shut down after their drain. A nil *adminSide (no [admin]
// table) does nothing.
type adminSide struct {
	cfg     *config.Admin
	metrics *admin.Metrics
	names   admin.PoolNames // the pools the metrics label lines with, once serving
	opts    admin.Options   // what open found to serve
	srv     *admin.Server
	ln      net.Listener
	done    chan error
	log     *slog.Logger
	stop    sync.Once // shutdown's work, done once however often it is called
}

// newAdmin builds the metrics of cfg, if it has an [admin] table, and
// returns the logger the proxies must use (log: the proxies count their
// connections themselves, see count, so nothing is built for the metrics
// at a level the log leaves out).
//
// The metrics m of the running configuration, if not nil, go on (their
// counters carry across a reload), naming the new configuration's pools.
func newAdmin(cfg *config.Config, log *slog.Logger, m *admin.Metrics) (*adminSide, *slog.Logger) {
	if cfg.Admin == nil {
		return nil, log
	}
	names := admin.PoolNames{Listener: map[string]string{}, Route: map[[2]string]string{}}
	for _, l := range cfg.Listeners {
		names.Listener[l.Name] = l.Pool
		if l.HTTP != nil {
			for _, r := range l.HTTP.Routes {
				names.Route[[2]string{l.Name, r.Name}] = r.Pool
			}
		}
	}
	if m == nil {
		m = admin.NewMetrics(names, buildVersion())
	}
	return &adminSide{cfg: cfg.Admin, metrics: m, names: names, log: log}, log
}

// count gives srv, listener name's new proxy, the listener's counters,
// which the proxies a reload puts on it share.
func (a *adminSide) count(srv server, name string) {
	if a == nil {
		return
	}
	switch s := srv.(type) {
	case *l4.Server:
		s.Counters = a.metrics.TCPCounters(name)
	case *udp.Server:
		s.Counters = a.metrics.UDPCounters(name)
	case *l7.Server:
		s.Counters = a.metrics.HTTPCounters(name)
	}
}

// prober wraps a backend's prober so that its checks are counted and the
// last one shown.
func (a *adminSide) prober(p *pool.Pool, b *pool.Backend, pr health.Prober) health.Prober {
	if a == nil {
		return pr
	}
	return a.metrics.Prober(p, b, pr)
}

// forget drops what prober kept of a backend its pool no longer has.
func (a *adminSide) forget(p *pool.Pool, b *pool.Backend) {
	if a != nil {
		a.metrics.ForgetChecks(p, b)
	}
}

var _ checkObserver = (*adminSide)(nil)

// listener opens the admin socket; or, if prev (the running
// configuration's admin listener) has the same address, returns a copy of
// its socket, so that the API stays up through a reload.
//
// At start after an upgrade, inh's admin socket is taken if its address
// is the same.
func (a *adminSide) listener(prev *adminSide, inh *inherited) (net.Listener, error) {
	if a == nil {
		return nil, nil
	}
	if ln, err := inh.adminListener(a.cfg); ln != nil || err != nil {
		return ln, err
	}
	if prev != nil && prev.cfg.Network() == a.cfg.Network() && prev.cfg.Address() == a.cfg.Address() {
		f, err := prev.ln.(interface{ File() (*os.File, error) }).File()
		if err != nil {
			return nil, fmt.Errorf("admin: sharing its socket: %w", err)
		}
		defer f.Close()
		ln, err := net.FileListener(f)
		if err != nil {
			return nil, fmt.Errorf("admin: sharing its socket: %w", err)
		}
		if ul, ok := prev.ln.(*net.UnixListener); ok {
			// The socket file is now the new listener's to remove
			// at exit (FileListener's default), not the old one's.
			ul.SetUnlinkOnClose(false)
		}
		return ln, nil
	}
	ln, err := listenAdmin(a.cfg)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	return ln, nil
}

// open sets up the admin interface on ln (from listener), with every
// listener and pool of the configuration behind it. Nothing is served
// until serve.
func (a *adminSide) open(cfg *config.Config, pools map[string]*pool.Pool, all []opened, ln net.Listener) {
	if a == nil {
		return
	}
	poolOf := make(map[string]string, len(cfg.Listeners))
	for _, l := range cfg.Listeners {
		poolOf[l.Name] = l.Pool
	}
	var ls []admin.Listener
	for _, o := range all {
		l := admin.Listener{Name: o.name, Protocol: o.proto.String(), Bind: o.bind, Pool: poolOf[o.name]}
		if s, ok := o.srv.(*udp.Server); ok {
			l.UDP = s.Stats
		}
		if o.certs != nil {
			l.Certificates = o.certs.expiries
		}
		ls = append(ls, l)
	}
	var ps []admin.Pool
	for _, pc := range cfg.Pools {
		ps = append(ps, admin.Pool{Pool: pools[pc.Name], Balance: pc.Balance, HashKey: pc.HashKey})
	}
	a.ln = ln
	a.opts = admin.Options{Listeners: ls, Pools: ps, Metrics: a.metrics, Token: a.cfg.Token,
		Version: buildVersion(), Logger: a.log}
}

// listenAdmin opens the admin socket. A Unix socket file left by a
// sluice that did not exit cleanly is removed first, once nothing
// answers on it; another running sluice's is left alone.
func listenAdmin(c *config.Admin) (net.Listener, error) {
	if c.Network() == "unix" {
		if fi, err := os.Lstat(c.Path); err == nil && fi.Mode().Type() == fs.ModeSocket {
			if conn, err := net.DialTimeout("unix", c.Path, time.Second); err == nil {
				conn.Close()
				return nil, fmt.Errorf("%s: another process is serving on this socket", c.Path)
			}
			os.Remove(c.Path)
		}
	}
	ln, err := net.Listen(c.Network(), c.Address())
	if err != nil {
		return nil, err
	}
	if c.Network() == "unix" {
		// The API can drain backends: only the owner and its group
		// may connect, whatever the umask.
		if err := os.Chmod(c.Path, 0o660); err != nil {
			ln.Close()
			return nil, err
		}
	}
	return ln, nil
}

// setBGP gives the admin interface the host's BGP speaker (nil: none).
func (a *adminSide) setBGP(b admin.BGP) {
	if a != nil {
		a.opts.BGP = b
	}
}

// serve starts serving the admin interface, with ed carrying out its
// changes to backend sets, reload its reloads and upgrade its upgrades.
func (a *adminSide) serve(ed admin.Editor, reload func() error, upgrade func(string) (int, error)) {
	if a == nil {
		return
	}
	a.opts.Editor = ed
	a.opts.Reload = reload
	a.opts.Upgrade = upgrade
	// Only now: a reload that fails before this keeps the names.
	a.metrics.SetPoolNames(a.names)
	a.srv = admin.New(a.opts)
	a.done = make(chan error, 1)
	go func() { a.done <- a.srv.Serve(a.ln) }()
	a.log.Info("admin listening", slog.String("bind", a.ln.Addr().String()),
		slog.Bool("token", a.cfg.Token != ""))
}

// shutdown stops the admin server, after the proxies' drain: the API and
// the metrics stay up to watch it.
func (a *adminSide) shutdown() {
	if a == nil || a.done == nil {
		return
	}
	a.stop.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		a.srv.Shutdown(ctx)
		if err := <-a.done; err != nil && !errors.Is(err, net.ErrClosed) {
			a.log.Warn("admin server", slog.String("error", err.Error()))
		}
	})
}

// logWarnings logs the configuration's warnings at start.
func logWarnings(cfg *config.Config, log *slog.Logger) {
	for _, w := range cfg.Warnings {
		log.Warn("configuration warning", slog.String("warning", w.Error()))
	}
}
