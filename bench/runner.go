package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// measureAll runs every scenario on every system for each repetition,
// with the systems interleaved (A B C D, then B C D A, ...) so that a
// noisy minute on the shared machine hits them all alike, and returns the
// results and the config each proxy ran with.
func measureAll(ctx context.Context, e *env, set settings, scens []*scenario) (*results, map[string]string, error) {
	be, err := startBackend()
	if err != nil {
		return nil, nil, err
	}
	defer be.Close()
	bk := &backends{tcp: be}
	defer bk.closeDBs()
	if slices.ContainsFunc(scens, func(sc *scenario) bool { return sc.proto == "tls" || sc.proto == "sni" }) {
		if bk.tls, err = startTLSBench(e.dir); err != nil {
			return nil, nil, err
		}
		defer bk.tls.Close()
	}
	if err := bk.startDBs(ctx, set.tools, scens); err != nil {
		return nil, nil, err
	}
	if slices.ContainsFunc(scens, func(sc *scenario) bool { return sc.proto == "udp" }) {
		ue, err := startUDPEcho(be.addr())
		if err != nil {
			return nil, nil, err
		}
		defer ue.Close()
	}
	// Scenarios that measure memory growth run first, on fresh proxies.
	scens = slices.Clone(scens)
	slices.SortStableFunc(scens, func(a, b *scenario) int { return boolCmp(b.fresh, a.fresh) })
	res := newResults(set.reps, e.systems, scens)
	cfgs := map[string]string{}
	if slices.ContainsFunc(scens, func(sc *scenario) bool { return sc.key == "idle" }) {
		// The first idle run on a machine grows kernel tables (the bench's
		// fd table, slab caches' per-CPU parts) that later runs reuse; let
		// no system pay for that.
		progress("warming up: holding %d direct connections once", set.idleConns)
		if _, err := idle(ctx, bk.direct(), set.idleConns, 0); err != nil {
			return nil, nil, fmt.Errorf("warming up: %w", err)
		}
	}
	for rep := range set.reps {
		order := rotate(e.systems, rep)
		if err := measureRep(ctx, e, &set, bk, scens, order, rep, res, cfgs); err != nil {
			return nil, nil, err
		}
	}
	res.derive()
	return res, cfgs, nil
}

// measureRep is one repetition: start every proxy afresh, run the
// scenarios, stop the proxies.
func measureRep(ctx context.Context, e *env, set *settings, bk *backends, scens []*scenario,
	order []*system, rep int, res *results, cfgs map[string]string) error {
	procs := map[*system]*proxyProc{}
	defer func() {
		for s, p := range procs {
			if err := p.stop(); err != nil {
				progress("warning: %v", err)
			}
			delete(procs, s)
		}
	}()
	for _, sc := range scens {
		if err := waitQuiet(ctx, &set.quietBudget); err != nil {
			return err
		}
		for _, sys := range order {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !sys.speaks(sc.proto) {
				continue // its cell stays "-"
			}
			t, err := ensureRunning(ctx, e, *set, bk, sys, procs, cfgs)
			var m map[string]float64
			if err == nil {
				m, err = sc.run(ctx, t, *set)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				msg := fmt.Sprintf("rep %d, %s, %s: %v", rep+1, sc.key, sys.name, err)
				res.failures = append(res.failures, msg)
				progress("FAILED %s", msg)
				continue
			}
			res.add(sys.key, sc.key, rep, m)
			progress("rep %d/%d  %-9s %-8s %s", rep+1, set.reps, sc.key, sys.name, describe(sc, m))
		}
	}
	return nil
}

// backends are what every system leads to: the in-process TCP backend
// and the database servers the chosen scenarios need.
type backends struct {
	tcp *backend
	dbs []*dbServer
	tls *tlsBench // nil without TLS scenarios
}

// startDBs starts each database server that one of scens needs.
func (bk *backends) startDBs(ctx context.Context, tools clientTools, scens []*scenario) error {
	for _, name := range []string{"postgres", "redis"} {
		if !slices.ContainsFunc(scens, func(sc *scenario) bool { return sc.needs == name }) {
			continue
		}
		progress("starting %s for the real clients", name)
		var db *dbServer
		var err error
		if name == "postgres" {
			db, err = startPostgres(ctx, tools.pg)
		} else {
			db, err = startRedis(ctx, tools.redis)
		}
		if err != nil {
			return err
		}
		bk.dbs = append(bk.dbs, db)
	}
	return nil
}

func (bk *backends) closeDBs() {
	for _, db := range bk.dbs {
		if err := db.Close(); err != nil {
			progress("warning: %v", err)
		}
	}
}

// direct is the target without a proxy.
func (bk *backends) direct() target {
	t := target{addr: bk.tcp.addr(), be: bk.tcp, relays: map[string]string{}, httpAddr: bk.tcp.addr()}
	if bk.tls != nil {
		t.sniAddr = bk.tls.backend.addr()
	}
	for _, db := range bk.dbs {
		t.relays[db.name] = db.addr
	}
	return t
}

// ensureRunning returns the target for sys, starting its proxy when it is
// not running (first use in a repetition, or after it died).
func ensureRunning(ctx context.Context, e *env, set settings, bk *backends, sys *system,
	procs map[*system]*proxyProc, cfgs map[string]string) (target, error) {
	if sys == directSystem {
		return bk.direct(), nil
	}
	if p := procs[sys]; p != nil {
		select {
		case <-p.done:
			progress("warning: %s exited (%v), restarting it: %s", sys.name, p.waitErr, tail(p.logPath))
			delete(procs, sys)
		default:
			return p.target(bk), nil
		}
	}
	listen, err := freePort()
	if err != nil {
		return target{}, err
	}
	params := proxyParams{listen: listen, backend: bk.tcp.addr(), cores: set.cores, dir: e.dir}
	if params.httpListen, err = freePort(); err != nil {
		return target{}, err
	}
	if params.h2Listen, err = freePort(); err != nil {
		return target{}, err
	}
	if bk.tls != nil {
		params.tls = &tlsListens{tlsBench: bk.tls}
		for _, a := range []*string{&params.tls.ecdsa, &params.tls.rsa, &params.tls.sni} {
			if *a, err = freePort(); err != nil {
				return target{}, err
			}
		}
	}
	for _, db := range bk.dbs {
		l, err := freePort()
		if err != nil {
			return target{}, err
		}
		params.relays = append(params.relays, relay{name: db.name, listen: l, backend: db.addr})
	}
	p, err := startProxy(ctx, sys, e.bins[sys.key], params, set.proxyCPUs)
	if err != nil {
		return target{}, err
	}
	procs[sys] = p
	cfgs[sys.key] = sys.config(params)
	return p.target(bk), nil
}

// target is what the load drives through the proxy.
func (pp *proxyProc) target(bk *backends) target {
	t := target{addr: pp.addr, proc: pp, be: bk.tcp, relays: map[string]string{},
		httpAddr: pp.params.httpListen, h2Addr: pp.params.h2Listen}
	if l := pp.params.tls; l != nil {
		t.tlsECDSA, t.tlsRSA, t.sniAddr = l.ecdsa, l.rsa, l.sni
	}
	for _, r := range pp.relays {
		t.relays[r.name] = r.listen
	}
	return t
}

// rotate returns systems starting at index rep, wrapping around.
func rotate(systems []*system, rep int) []*system {
	k := rep % len(systems)
	return append(slices.Clone(systems[k:]), systems[:k]...)
}

// describe formats one run's metrics for a progress line.
func describe(sc *scenario, m map[string]float64) string {
	var parts []string
	for _, mt := range sc.metrics {
		v, ok := m[mt.key]
		if !ok || math.IsNaN(v) {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s "+mt.format+" %s", mt.label, v, mt.unit))
	}
	if late := m["late"]; late > 0 {
		parts = append(parts, fmt.Sprintf("(%.0f requests sent late)", late))
	}
	return strings.Join(parts, ", ")
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// Other processes count as quiet below this many CPUs.
const quietCPUs = 0.25

// waitQuiet waits, before a round of a scenario, until other processes
// use less than quietCPUs over half a second, spending at most what is
// left of budget over the whole run; then it goes on regardless.
func waitQuiet(ctx context.Context, budget *time.Duration) error {
	start := time.Now()
	for *budget > 0 {
		busy, err := othersCPU(ctx, 500*time.Millisecond)
		if err != nil || busy < quietCPUs {
			break
		}
		*budget -= 500 * time.Millisecond
		if *budget <= 0 {
			progress("warning: other processes keep %.2f CPUs busy; going on without waiting longer", busy)
		}
	}
	if waited := time.Since(start); waited > time.Second {
		progress("waited %v for other processes to quieten down", waited.Round(time.Second))
	}
	return ctx.Err()
}

// othersCPU measures how many CPUs processes other than the bench and its
// children keep busy over d.
func othersCPU(ctx context.Context, d time.Duration) (float64, error) {
	m0, s0, err := cpuTotals()
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := sleepCtx(ctx, d); err != nil {
		return 0, err
	}
	m1, s1, err := cpuTotals()
	if err != nil {
		return 0, err
	}
	return max(float64((m1-m0)-(s1-s0)), 0) / clockTicks / time.Since(t0).Seconds(), nil
}
