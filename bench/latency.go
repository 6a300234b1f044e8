package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

// latency sends requests at a fixed total rate over conns keep-alive
// connections and reports the p50 and p99 round trip in microseconds.
//
// A closed-loop load (wrk) measures queueing at full speed; a paced load
// at a moderate rate measures what one request costs. Each connection
// keeps its own schedule, staggered against the others. A round trip is
// timed from the moment the request is written, because Go's timers wake
// a sleeper up to a millisecond late and that slack is not the proxy's.
// When the previous response came back after the next request was due,
// the wait is the system's fault, so that request is timed from when it
// was due (the coordinated omission correction of wrk2).
func latency(ctx context.Context, t target, o runOpts, rate float64, conns int) (map[string]float64, error) {
	interval := time.Duration(float64(conns) / rate * float64(time.Second))
	start := time.Now().Add(50 * time.Millisecond)
	from, to := start.Add(o.warm), start.Add(o.warm+o.dur)
	ctx, cancel := context.WithDeadline(ctx, to)
	defer cancel()
	var mu sync.Mutex
	var all []time.Duration
	late := 0
	err := workers(ctx, conns, func(ctx context.Context, i int) error {
		req, resp := make([]byte, reqSize), make([]byte, reqSize)
		c, stopAfter, err := dial(ctx, t.addr, modeEcho, req)
		if err != nil {
			return err
		}
		defer c.Close()
		defer stopAfter()
		if _, err := io.ReadFull(c, resp); err != nil {
			return fmt.Errorf("reading first response: %w", err)
		}
		samples := make([]time.Duration, 0, int(o.dur/interval)+1)
		behind := 0
		prev := time.Now()
		due := start.Add(interval * time.Duration(i) / time.Duration(conns))
		for ; due.Before(to); due = due.Add(interval) {
			if err := sleepCtx(ctx, time.Until(due)); err != nil {
				break
			}
			sent := time.Now()
			if prev.After(due) {
				sent = due
				behind++
			}
			if _, err := c.Write(req); err != nil {
				return fmt.Errorf("writing request: %w", err)
			}
			if _, err := io.ReadFull(c, resp); err != nil {
				return fmt.Errorf("reading response: %w", err)
			}
			prev = time.Now()
			if !due.Before(from) {
				samples = append(samples, prev.Sub(sent))
			}
		}
		mu.Lock()
		all = append(all, samples...)
		late += behind
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil && time.Now().Before(to) {
		return nil, err // cancelled from outside
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("measuring latency: no samples")
	}
	slices.Sort(all)
	us := func(q float64) float64 { return float64(percentile(all, q)) / 1e3 }
	return map[string]float64{
		"p50":  us(0.50),
		"p99":  us(0.99),
		"rate": float64(len(all)) / o.dur.Seconds(),
		"late": float64(late),
	}, nil
}

// percentile returns the q-quantile of sorted samples by the nearest-rank
// method.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
