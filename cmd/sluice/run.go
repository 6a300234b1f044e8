package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"sluice/config"
	"sluice/internal/pool"
	"sluice/l4"
	"sluice/l4/udp"
	"sluice/l7"
)

func runCommand(args []string, stderr io.Writer) error {
	path, err := configFlag("run", args, stderr)
	if err != nil {
		return err
	}
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return fmt.Errorf("%s: configuration has errors", path)
	}
	return serve(cfg, newLogger(cfg.Log, stderr), nil, func() (*config.Config, error) { return config.Load(path) })
}

func checkCommand(args []string, stdout, stderr io.Writer) error {
	path, err := configFlag("check", args, stderr)
	if err != nil {
		return err
	}
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return fmt.Errorf("%s: configuration has errors", path)
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	fmt.Fprintf(stdout, "%s: configuration is valid\n", path)
	return nil
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.Level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if c.Format == config.LogJSON {
		h = slog.NewJSONHandler(w, opts)
	}
	if c.HTTPFormat != config.HTTPLogRecord {
		// HTTP request records become Common/Combined lines; handlers
		// wrapped around this one (the admin's counters) still see them.
		h = l7.NewCLFHandler(w, c.HTTPFormat == config.HTTPLogCombined, h)
	}
	return slog.New(h)
}

// server is one listener's proxy: an *l4.Server, a *udp.Server or an
// *l7.Server.
type server interface {
	Shutdown(ctx context.Context) error
}

// opened is a listener whose sockets are open and whose proxy is built but
// not yet serving.
type opened struct {
	srv     server
	serve   func() error // takes over the sockets
	close   func()       // closes the sockets if serve never runs
	name    string
	proto   config.Protocol
	bind    string
	sockets int
	// The sockets themselves, for a reload to share with the next
	// proxy of the same listener (one of the two is nil).
	tcp []*net.TCPListener
	udp []*net.UDPConn
	// certs are the listener's certificate sources, nil without TLS,
	// for the admin metrics' expiry gauge.
	certs *listenerCerts
}

// openTCP builds a TCP listener's proxy on lns.
func openTCP(lc config.Listener, lns []*net.TCPListener, pc *config.Pool, pools map[string]*pool.Pool, fdCap *l4.Limiter,
	pace *l4.Pacer, log *slog.Logger) (opened, error) {
	srv := &l4.Server{
		DrainPacer:        pace,
		Name:              lc.Name,
		Pool:              pools[lc.Pool],
		MaxConnections:    lc.MaxConnections,
		ConnectTimeout:    lc.ConnectTimeout,
		IdleTimeout:       lc.IdleTimeout,
		HalfClosedTimeout: lc.HalfClosedTimeout,
		ClientKeepAlive:   l4.KeepAlive(lc.KeepAlive),
		Limiter:           fdCap,
		Logger:            log,
	}
	if pc != nil {
		srv.BackendKeepAlive = l4.KeepAlive(pc.KeepAlive)
	}
	tcpHooks(srv, lc, pc)
	sniHooks(srv, lc, pools)
	store, err := tcpTLS(srv, lc, pc, log)
	if err != nil {
		return opened{}, err
	}
	serve := func() error { return srv.Serve(lns) }
	if store != nil {
		serve = func() error {
			// The reload watcher lives as long as the listener serves.
			store.Start()
			defer store.Stop()
			return srv.Serve(lns)
		}
	}
	return opened{srv: srv, serve: serve, close: func() { closeAll(lns) },
		name: lc.Name, proto: lc.Protocol, bind: lns[0].Addr().String(), sockets: len(lns), tcp: lns, certs: store}, nil
}

// openUDP opens a UDP listener's sockets and builds its proxy.
func openUDP(lc config.Listener, conns []*net.UDPConn, pc *config.Pool, p *pool.Pool, log *slog.Logger) opened {
	srv := &udp.Server{
		Name:           lc.Name,
		Pool:           p,
		SessionTimeout: lc.SessionTimeout,
		Responses:      lc.Responses,
		MaxSessions:    lc.MaxSessions,
		Logger:         log,
	}
	udpHooks(srv, lc, pc)
	return opened{srv: srv, serve: func() error { return srv.Serve(conns) }, close: func() { closeAll(conns) },
		name: lc.Name, proto: lc.Protocol, bind: conns[0].LocalAddr().String(), sockets: len(conns), udp: conns}
}

func poolOptions(pc config.Pool, log *slog.Logger) pool.Options {
	o := pool.Options{
		Name:            pc.Name,
		Balance:         pc.Balance,
		HashKey:         pc.HashKey,
		TableSize:       pc.TableSize,
		Retries:         pc.Retries,
		Checked:         pc.Health != nil,
		SlowStart:       pc.SlowStart,
		PassiveFailures: pc.PassiveFailures,
		PassiveBackoff:  pc.PassiveBackoff,
		CloseOnDown:     pc.OnDown == config.OnDownClose,
		Logger:          log,
	}
	for _, b := range pc.Backends {
		o.Backends = append(o.Backends, pool.BackendOptions{Addr: b.Address, Weight: b.Weight, Backup: b.Backup, Admin: b.State})
	}
	return o
}

// serve runs cfg until SIGTERM or SIGINT (or until stop closes, for the
// demo's tests), then drains. A second signal ends the drain at once.
// SIGHUP reloads the configuration with load; nil load (the demo) has
// nothing to reload.
func serve(cfg *config.Config, log *slog.Logger, ready func(), load func() (*config.Config, error)) error {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	// Caught before start: SIGHUP's default action would end the process
	// and reset every connection (operators and log-rotation scripts send
	// it out of habit; nginx and HAProxy reload on it).
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)
	// SIGUSR2 too: its default action ends the process.
	usr2 := make(chan os.Signal, 1)
	signal.Notify(usr2, syscall.SIGUSR2)
	defer signal.Stop(usr2)
	// Started by an upgrade: the old process's sockets are taken over.
	inh, err := inheritFromEnv()
	if err != nil {
		return err
	}
	d, err := startOn(cfg, log, inh, func(d *daemon) {
		d.load = load
		d.sd = newNotifier()
		d.up.exe, d.up.args = executable(), os.Args[1:]
	})
	inh.closeUnused()
	if err != nil {
		return err
	}
	if inh != nil {
		// systemd hears of this process from the old one (MAINPID=)
		// once the connections are over here; so does the pid file.
		d.takeOver(inh)
	}
	if err := writePIDFile(cfg.PIDFile); err != nil {
		log.Error("writing the pid file", slog.String("error", err.Error()))
	}
	defer func() {
		// After an upgrade the file is the new process's, written
		// just now perhaps: checking whose pid it holds would race
		// with that.
		select {
		case <-d.handedOver():
		default:
			removePIDFile(cfg.PIDFile)
		}
	}()
	if inh == nil {
		d.notify("READY=1")
	}
	if ready != nil {
		ready()
	}
	trimCtx, stopTrim := context.WithCancel(context.Background())
	trimDone := make(chan struct{})
	go func() {
		defer close(trimDone)
		trimMemory(trimCtx)
	}()
	defer func() {
		stopTrim()
		<-trimDone
	}()
	var sig os.Signal
	upgraded := false
	for sig == nil && !upgraded {
		select {
		case sig = <-sigs:
		case <-hups:
			// Errors are logged by reload; the process goes on.
			d.reload()
		case <-usr2:
			// Errors are logged by upgrade; the process goes on.
			d.upgrade("")
		case <-d.handedOver():
			// Through SIGUSR2 or the admin API.
			upgraded = true
		}
	}
	// With BGP, the routers are told first and given time to move new
	// connections elsewhere while the listeners still accept. Not after
	// an upgrade: the new process serves this host's prefixes, and its
	// own session (a BGP session cannot be handed over) takes the
	// neighbours once this one is closed, at once.
	hurry := false
	if upgraded {
		d.stopBGP()
	} else {
		hurry = d.withdrawFirst(sigs, log)
	}
	defer d.stopBGP()
	drain := d.drainTimeout()
	if upgraded {
		log.Info("shutting down after the upgrade", slog.Duration("drain_timeout", drain))
	} else {
		log.Info("shutting down", slog.String("signal", sig.String()), slog.Duration("drain_timeout", drain))
	}
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	// Watched until the drain is over, not only until its timeout: what
	// is left then is closed at drain_rate, which may take a while.
	stopped := make(chan struct{})
	second := make(chan struct{})
	if hurry {
		// A second signal came during withdraw_delay: as below.
		cancel()
		d.closeNow()
	}
	go func() {
		defer close(second)
		select {
		case <-sigs:
			log.Warn("second signal: closing connections now")
			cancel()
			d.closeNow()
		case <-stopped:
		}
	}()
	err = d.shutdown(ctx)
	close(stopped)
	<-second
	if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("stopped")
	return nil
}

func closeAll[T interface{ Close() error }](cs []T) {
	for _, c := range cs {
		c.Close()
	}
}
