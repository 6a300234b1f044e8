package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// idleDialers is how many clients open the held connections at once.
const idleDialers = 32

// idle holds n connections through t, each proven established end to end
// by one echo, and reports per connection: the proxy's RSS and fd growth,
// and the machine's: the kernel's memory growth (sockets, pipes, slab)
// plus the proxy's anonymous memory growth.
//
// The proxy should be fresh: a proxy that held connections before keeps
// its freed memory in pools (HAProxy) or its heap (Go), and a second run
// would show almost nothing.
func idle(ctx context.Context, t target, n int, settle time.Duration) (map[string]float64, error) {
	if err := waitBackendIdle(ctx, t.be, 10*time.Second); err != nil {
		return nil, err
	}
	if err := sleepCtx(ctx, time.Second); err != nil {
		return nil, err
	}
	before, err := snapshot(ctx, t)
	if err != nil {
		return nil, err
	}
	release, err := hold(ctx, t.addr, n)
	defer release()
	if err != nil {
		return nil, err
	}
	if err := sleepCtx(ctx, settle); err != nil {
		return nil, err
	}
	after, err := snapshot(ctx, t)
	if err != nil {
		return nil, err
	}
	return after.perConn(before, n, t.proc != nil), nil
}

// hold opens n connections to addr with idleDialers clients and makes one
// echo on each. release closes whatever was opened, also after an error.
func hold(ctx context.Context, addr string, n int) (release func(), err error) {
	conns := make([]*net.TCPConn, n)
	stops := make([]func() bool, n)
	release = func() {
		for i, c := range conns {
			if c != nil {
				stops[i]()
				c.Close()
			}
		}
	}
	var next atomic.Int64
	err = workers(ctx, idleDialers, func(ctx context.Context, _ int) error {
		buf := make([]byte, 8)
		for {
			i := int(next.Add(1)) - 1
			if i >= n || ctx.Err() != nil {
				return nil
			}
			c, stop, err := dial(ctx, addr, modeEcho, buf)
			if err != nil {
				return fmt.Errorf("holding connection %d: %w", i, err)
			}
			conns[i], stops[i] = c, stop
			if _, err := io.ReadFull(c, buf); err != nil {
				return fmt.Errorf("echo on held connection %d: %w", i, err)
			}
		}
	})
	if err == nil {
		err = ctx.Err()
	}
	return release, err
}

// idleState is what idle compares before and after opening connections.
type idleState struct {
	proxy  procUsage
	kernel int64 // kernelKB
}

// snapshot reads the proxy's usage and the kernel's memory, the latter as
// the median of a few readings, with empty slabs freed first.
func snapshot(ctx context.Context, t target) (idleState, error) {
	var s idleState
	var err error
	shrinkSlabs()
	var ks []float64
	for range 3 {
		k, err := kernelKB()
		if err != nil {
			return s, err
		}
		ks = append(ks, float64(k))
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return s, err
		}
	}
	s.kernel = int64(summarize(ks).med)
	if s.proxy, err = usage(t); err != nil {
		return s, err
	}
	return s, nil
}

// perConn turns two snapshots into per-connection metrics. The machine
// figure is the kernel's growth plus the proxy's anonymous memory growth;
// the in-process clients and backends are the same for every system, and
// their kernel sockets are what direct's row shows.
func (s idleState) perConn(before idleState, n int, proxied bool) map[string]float64 {
	per := func(d int64) float64 { return float64(d) / float64(n) }
	m := map[string]float64{
		"machine_kb": per(s.kernel - before.kernel + s.proxy.anonKB - before.proxy.anonKB),
	}
	if proxied {
		m["rss_kb"] = per(s.proxy.rssKB - before.proxy.rssKB)
		m["fds"] = per(s.proxy.fds - before.proxy.fds)
	}
	return m
}

// waitBackendIdle waits until the backend has no open connection left
// from an earlier run, so that one system's closing connections do not
// count in the next one's baseline.
func waitBackendIdle(ctx context.Context, be *backend, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for be.active.Load() > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for the backend to go idle: %d connections still open", be.active.Load())
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}
