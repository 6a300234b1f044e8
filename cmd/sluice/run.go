package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"sluice/config"
	"sluice/internal/listen"
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
	return serve(cfg, newLogger(cfg.Log, stderr), nil)
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

// instance is one running configuration: its pools and proxies.
type instance struct {
	servers []server
	done    chan error // one Serve result per server
	checks  *checks
	disc    *discovery
	admin   *adminSide
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
}

// start builds the pools, opens every listener, and only then starts
// serving, so a bind failure leaves nothing half-started.
func start(cfg *config.Config, log *slog.Logger) (*instance, error) {
	logWarnings(cfg, log)
	adm, log := newAdmin(cfg, log)
	pools := make(map[string]*pool.Pool, len(cfg.Pools))
	disc := newDiscovery(cfg, log)
	for _, pc := range cfg.Pools {
		o := poolOptions(pc, log)
		disc.resolve(pc, &o)
		p, err := pool.New(o)
		if err != nil {
			return nil, fmt.Errorf("pool %s: %w", pc.Name, err)
		}
		pools[pc.Name] = p
	}
	fdCap, fdLimit, err := fdLimiter(cfg)
	if err != nil {
		return nil, err
	}
	if fdCap != nil {
		log.Info("connections capped by the file descriptor limit",
			slog.Uint64("fd_limit", fdLimit), slog.Int("max_connections", fdCap.Max()))
	}
	warnUDPSessions(cfg, fdLimit, log)
	checks, err := newChecks(cfg, pools, log, adm)
	if err == nil {
		err = disc.checkAll(checks, pools)
	}
	if err != nil {
		return nil, err
	}
	var all []opened
	for _, lc := range cfg.Listeners {
		var o opened
		var err error
		switch lc.Protocol {
		case config.UDP:
			o, err = openUDP(lc, cfg.Pool(lc.Pool), pools[lc.Pool], log)
		case config.HTTP:
			o, err = openHTTP(cfg, lc, pools, log)
		default:
			o, err = openTCP(lc, cfg.Pool(lc.Pool), pools, fdCap, log)
		}
		if err != nil {
			for _, o := range all {
				o.close()
			}
			return nil, fmt.Errorf("listener %s: %w", lc.Name, err)
		}
		all = append(all, o)
	}
	if err := adm.open(cfg, pools, all); err != nil {
		for _, o := range all {
			o.close()
		}
		return nil, err
	}
	in := &instance{done: make(chan error, len(all)), checks: checks, disc: disc, admin: adm}
	var tcp []*l4.Server
	for _, o := range all {
		if s, ok := o.srv.(*l4.Server); ok {
			tcp = append(tcp, s)
		}
	}
	closeOnDown(cfg, pools, tcp)
	checks.start()
	disc.start(pools, tcp, checks)
	for _, o := range all {
		in.servers = append(in.servers, o.srv)
		go func() { in.done <- o.serve() }()
		log.Info("listening", slog.String("listener", o.name), slog.String("protocol", o.proto.String()),
			slog.String("bind", o.bind), slog.Int("sockets", o.sockets))
	}
	adm.serve(newEdits(cfg, pools, tcp, checks, disc, log))
	return in, nil
}

// openTCP opens a TCP listener's sockets and builds its proxy.
func openTCP(lc config.Listener, pc *config.Pool, pools map[string]*pool.Pool, fdCap *l4.Limiter, log *slog.Logger) (opened, error) {
	lns, err := listen.TCP(context.Background(), lc.Bind, lc.Sockets)
	if err != nil {
		return opened{}, err
	}
	srv := &l4.Server{
		Name:              lc.Name,
		Pool:              pools[lc.Pool],
		MaxConnections:    lc.MaxConnections,
		ConnectTimeout:    lc.ConnectTimeout,
		IdleTimeout:       lc.IdleTimeout,
		HalfClosedTimeout: lc.HalfClosedTimeout,
		Limiter:           fdCap,
		Logger:            log,
	}
	tcpHooks(srv, lc, pc)
	sniHooks(srv, lc, pools)
	store, err := tcpTLS(srv, lc, pc, log)
	if err != nil {
		closeAll(lns)
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
		name: lc.Name, proto: lc.Protocol, bind: lns[0].Addr().String(), sockets: len(lns)}, nil
}

// openUDP opens a UDP listener's sockets and builds its proxy.
func openUDP(lc config.Listener, pc *config.Pool, p *pool.Pool, log *slog.Logger) (opened, error) {
	conns, err := listen.UDP(context.Background(), lc.Bind, lc.Sockets)
	if err != nil {
		return opened{}, err
	}
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
		name: lc.Name, proto: lc.Protocol, bind: conns[0].LocalAddr().String(), sockets: len(conns)}, nil
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

// shutdown drains every server until ctx ends, then closes what is left.
func (in *instance) shutdown(ctx context.Context) error {
	// The backend sets stay as they are through the drain.
	in.disc.stop()
	errs := make(chan error, len(in.servers))
	for _, s := range in.servers {
		go func() { errs <- s.Shutdown(ctx) }()
	}
	var err error
	for range in.servers {
		err = errors.Join(err, <-errs)
	}
	for range in.servers {
		<-in.done
	}
	in.admin.shutdown()
	// Checks run through the drain: a backend going down still moves
	// (or, with on_down close, ends) what is left.
	in.checks.stop()
	return err
}

// serve runs cfg until SIGTERM or SIGINT (or until stop closes, for the
// demo's tests), then drains. A second signal ends the drain at once.
func serve(cfg *config.Config, log *slog.Logger, ready func()) error {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	// Operators and log-rotation scripts send SIGHUP out of habit (nginx
	// and HAProxy reload on it). Its default action would end the process
	// and reset every connection, so until reload exists it is caught and
	// said to do nothing.
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)
	hupDone := make(chan struct{})
	stopHup := make(chan struct{})
	go func() {
		defer close(hupDone)
		for {
			select {
			case <-hups:
				log.Warn("SIGHUP ignored: reloading the configuration is not supported yet; restart to apply changes")
			case <-stopHup:
				return
			}
		}
	}()
	defer func() {
		close(stopHup)
		<-hupDone
	}()
	in, err := start(cfg, log)
	if err != nil {
		return err
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
	sig := <-sigs
	log.Info("shutting down", slog.String("signal", sig.String()),
		slog.Duration("drain_timeout", cfg.DrainTimeout))
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancel()
	go func() {
		select {
		case <-sigs:
			log.Warn("second signal: closing connections now")
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := in.shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
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
