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
	rts := make([]func() error, conns)
	for i, c := range cs {
		req, resp := make([]byte, reqSize), make([]byte, reqSize)
		rts[i] = func() error {
			if _, err := c.Write(req); err != nil {
				return fmt.Errorf("writing request: %w", err)
			}
			if _, err := io.ReadFull(c, resp); err != nil {
				return fmt.Errorf("reading response: %w", err)
			}
			return nil
		}
	}
	return paced(ctx, o, rate, cs, rts)
}

// paced keeps the schedule on connections cs, connection i making its
// round trips with rts[i], and summarises the round trips.
func paced(ctx context.Context, o runOpts, rate float64, cs []*net.TCPConn, rts []func() error) (map[string]float64, error) {
	conns := len(cs)
	// The schedule starts once every connection is up, so a slow dial does
	// not eat the window.
	start := time.Now().Add(10 * time.Millisecond)
	s := schedule{start: start, from: start.Add(o.warm), to: start.Add(o.warm + o.dur),
		interval: time.Duration(float64(conns) / rate * float64(time.Second)), conns: conns}
	// A request in flight at the end may finish within the grace; one
	// that does not is cut off by the connection deadline.
	ctx, cancel := context.WithDeadline(ctx, s.to.Add(2*time.Second))
	defer cancel()
	per := make([][]sample, conns) // each worker writes only its own
	lates := make([]int, conns)
	err := workers(ctx, conns, func(ctx context.Context, i int) error {
		var err error
		per[i], lates[i], err = s.run(ctx, cs[i], i, rts[i])
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil && time.Now().Before(s.to) {
		return nil, err // cancelled from outside
	}
	var all []sample
	late := 0
	for i := range per {
		all = append(all, per[i]...)
		late += lates[i]
	}
	return latencyMetrics(all, late, slicesOf(o.dur))
}

// schedule is a paced load's timetable: connection i of conns sends
// every interval from start plus its stagger, until to; requests due
// from from on are measured.
type schedule struct {
	start, from, to time.Time
	interval        time.Duration
	conns           int
}

// sample is one round trip, and the slice of the window it was due in.
type sample struct {
	slice int
	rtt   time.Duration
}

// run keeps connection i's part of the schedule, on c with roundTrip, and returns its round
// trips and how many requests it sent late because an answer was late.
func (s schedule) run(ctx context.Context, c *net.TCPConn, i int, roundTrip func() error) ([]sample, int, error) {
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	samples := make([]sample, 0, int(s.to.Sub(s.from)/s.interval)+1)
	slice := s.to.Sub(s.from) / time.Duration(slicesOf(s.to.Sub(s.from)))
	late := 0
	prev := time.Now()
	for due := s.start.Add(s.interval * time.Duration(i) / time.Duration(s.conns)); due.Before(s.to); due = due.Add(s.interval) {
		if err := sleepCtx(ctx, time.Until(due)); err != nil {
			return samples, late, err
		}
		sent := time.Now()
		if prev.After(due) {
			sent = due
			late++
		}
		if err := roundTrip(); err != nil {
			return samples, late, err
		}
		prev = time.Now()
		if !due.Before(s.from) {
			samples = append(samples, sample{int(due.Sub(s.from) / slice), prev.Sub(sent)})
		}
	}
	return samples, late, nil
}

// latencyMetrics summarises round trips: p50 and p99 of each slice of the
// window, then the median over the slices.
func latencyMetrics(all []sample, late, nslices int) (map[string]float64, error) {
	if len(all) == 0 {
		return nil, fmt.Errorf("measuring latency: no samples")
	}
	if late > len(all)/10 {
		progress("warning: %d of %d requests could not be sent on time: this machine is busy", late, len(all))
	}
	by := make([][]time.Duration, nslices)
	for _, s := range all {
		i := min(s.slice, nslices-1)
		by[i] = append(by[i], s.rtt)
	}
	var p50, p99 []float64
	for _, rtts := range by {
		if len(rtts) == 0 {
			continue
		}
		slices.Sort(rtts)
		p50 = append(p50, float64(percentile(rtts, 0.50))/1e3)
		p99 = append(p99, float64(percentile(rtts, 0.99))/1e3)
	}
	return map[string]float64{
		"p50":  summarize(p50).med,
		"p99":  summarize(p99).med,
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
