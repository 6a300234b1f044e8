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
	"sluice/internal/listen"
	"sluice/internal/pool"
	"sluice/l4"
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
	if _, err := config.Load(path); err != nil {
		fmt.Fprintln(stderr, err)
		return fmt.Errorf("%s: configuration has errors", path)
	}
	fmt.Fprintf(stdout, "%s: configuration is valid\n", path)
	return nil
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.Level}
	if c.Format == config.LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// instance is one running configuration: its pools and proxies.
type instance struct {
	servers []*l4.Server
	done    chan error // one Serve result per server
}

// start builds the pools, opens every listener, and only then starts
// serving, so a bind failure leaves nothing half-started.
func start(cfg *config.Config, log *slog.Logger) (*instance, error) {
	pools := make(map[string]*pool.Pool, len(cfg.Pools))
	for _, pc := range cfg.Pools {
		p, err := pool.New(poolOptions(pc))
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
	type pending struct {
		srv *l4.Server
		lns []*net.TCPListener
	}
	var all []pending
	for _, lc := range cfg.Listeners {
		lns, err := listen.TCP(context.Background(), lc.Bind, lc.Sockets)
		if err != nil {
			for _, p := range all {
				closeAll(p.lns)
			}
			return nil, fmt.Errorf("listener %s: %w", lc.Name, err)
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
		all = append(all, pending{srv, lns})
	}
	in := &instance{done: make(chan error, len(all))}
	for _, p := range all {
		in.servers = append(in.servers, p.srv)
		go func() { in.done <- p.srv.Serve(p.lns) }()
		log.Info("listening", slog.String("listener", p.srv.Name),
			slog.String("bind", p.lns[0].Addr().String()), slog.Int("sockets", len(p.lns)))
	}
	return in, nil
}

func poolOptions(pc config.Pool) pool.Options {
	o := pool.Options{
		Name:      pc.Name,
		Balance:   pc.Balance,
		HashKey:   pc.HashKey,
		TableSize: pc.TableSize,
		Retries:   pc.Retries,
	}
	for _, b := range pc.Backends {
		o.Backends = append(o.Backends, pool.BackendOptions{Addr: b.Address, Weight: b.Weight})
	}
	return o
}

// shutdown drains every server until ctx ends, then closes what is left.
func (in *instance) shutdown(ctx context.Context) error {
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
	return err
}

// serve runs cfg until SIGTERM or SIGINT (or until stop closes, for the
// demo's tests), then drains. A second signal ends the drain at once.
func serve(cfg *config.Config, log *slog.Logger, ready func()) error {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
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
