package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
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
	cs, err := openEchoConns(ctx, t.addr, conns)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	interval := time.Duration(float64(conns) / rate * float64(time.Second))
	// The schedule starts once every connection is up, so a slow dial does
	// not eat the window.
	start := time.Now().Add(10 * time.Millisecond)
	from, to := start.Add(o.warm), start.Add(o.warm+o.dur)
	// A request in flight at the end may finish within the grace; one
	// that does not is cut off by the connection deadline.
	ctx, cancel := context.WithDeadline(ctx, to.Add(2*time.Second))
	defer cancel()
	per := make([][]time.Duration, conns) // each worker writes only its own
	lates := make([]int, conns)
	err = workers(ctx, conns, func(ctx context.Context, i int) error {
		c := cs[i]
		stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
		defer stop()
		req, resp := make([]byte, reqSize), make([]byte, reqSize)
		per[i] = make([]time.Duration, 0, int(o.dur/interval)+1)
		prev := time.Now()
		due := start.Add(interval * time.Duration(i) / time.Duration(conns))
		for ; due.Before(to); due = due.Add(interval) {
			if err := sleepCtx(ctx, time.Until(due)); err != nil {
				return err
			}
			sent := time.Now()
			if prev.After(due) {
				sent = due
				lates[i]++
			}
			if _, err := c.Write(req); err != nil {
				return fmt.Errorf("writing request: %w", err)
			}
			if _, err := io.ReadFull(c, resp); err != nil {
				return fmt.Errorf("reading response: %w", err)
			}
			prev = time.Now()
			if !due.Before(from) {
				per[i] = append(per[i], prev.Sub(sent))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var all []time.Duration
	late := 0
	for i := range per {
		all = append(all, per[i]...)
		late += lates[i]
	}
	if err := ctx.Err(); err != nil && time.Now().Before(to) {
		return nil, err // cancelled from outside
	}
	if late > len(all)/10 {
		progress("warning: %d of %d requests could not be sent on time: this machine is busy", late, len(all))
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

// openEchoConns opens n connections to addr and makes one echo on each, so
// that they are known to reach the backend.
func openEchoConns(ctx context.Context, addr string, n int) ([]*net.TCPConn, error) {
	var cs []*net.TCPConn
	buf := make([]byte, reqSize)
	for range n {
		c, stopAfter, err := dial(ctx, addr, modeEcho, buf)
		if err == nil {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			_, err = io.ReadFull(c, buf)
			c.SetDeadline(time.Time{})
			stopAfter()
			if err != nil {
				c.Close()
				err = fmt.Errorf("reading first echo: %w", err)
			}
		}
		if err != nil {
			for _, c := range cs {
				c.Close()
			}
			return nil, err
		}
		cs = append(cs, c)
	}
	return cs, nil
}
