package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// target is what a scenario drives: an address that leads to the backend,
// and the proxy process behind that address (nil for direct).
type target struct {
	addr string
	proc *proxyProc
	be   *backend
	// relays are the addresses that lead to the database servers, by
	// name ("postgres", "redis"): a relay's listener, or the server itself
	// for direct.
	relays map[string]string
	// httpAddr leads to the backend's HTTP mode: the proxy's HTTP
	// listener, or the backend itself for direct; h2Addr is the proxy's
	// h2c listener (none for direct, whose backend speaks HTTP/1.1 only).
	httpAddr, h2Addr string
	// tlsECDSA and tlsRSA end TLS with either certificate and lead to
	// the backend; sniAddr leads by SNI to the TLS backend (which it is,
	// for direct). Empty without TLS scenarios.
	tlsECDSA, tlsRSA, sniAddr string
}

// runOpts are the lengths of one scenario run.
type runOpts struct {
	warm time.Duration // load before the measured window
	dur  time.Duration // the measured window
}

// workers runs n copies of work until ctx is done or one fails, waits for
// all of them, and returns the first error seen before ctx was done.
// Errors after that are the stop itself (a deadline cut a write short).
func workers(ctx context.Context, n int, work func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for i := range n {
		wg.Go(func() {
			if err := work(ctx, i); err != nil && ctx.Err() == nil {
				once.Do(func() { first = err })
				cancel()
			}
		})
	}
	wg.Wait()
	return first
}

// sliceLen is the length of the slices a window is cut into. Rates and
// latency percentiles are computed per slice and the median slice is
// reported: a process of someone else's that stalls the load for a moment
// then spoils one slice, not the figure.
const sliceLen = 500 * time.Millisecond

// slicesOf is how many slices a window of length d has.
func slicesOf(d time.Duration) int { return max(1, int((d+sliceLen/2)/sliceLen)) }

// window is one measured interval: the median rate of a counter over its
// slices, and the proxy's CPU over the whole of it.
type window struct {
	rate   float64 // counter increase per second, median slice
	cpuPct float64 // percent of one core; NaN without a proxy
}

// measure runs n workers, lets them warm up, measures count and the
// proxy's CPU over o.dur, then stops the workers and waits for them.
func measure(ctx context.Context, t target, o runOpts, n int, count func() int64,
	work func(ctx context.Context, i int) error) (window, error) {
	w := window{cpuPct: math.NaN()}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- workers(ctx, n, work) }() // joined on every return
	fail := func(err error) (window, error) {
		stop()
		<-errc
		return w, err
	}
	wait := func(d time.Duration) error {
		select {
		case err := <-errc:
			errc <- orDone(err, ctx) // fail reads it again
			return fmt.Errorf("load stopped: %w", orDone(err, ctx))
		case <-time.After(d):
			return nil
		}
	}
	if err := wait(o.warm); err != nil {
		return fail(err)
	}
	u0, err := usage(t)
	if err != nil {
		return fail(err)
	}
	t0 := time.Now()
	rates := make([]float64, 0, slicesOf(o.dur))
	c, tc := count(), t0
	for range slicesOf(o.dur) {
		if err := wait(o.dur / time.Duration(slicesOf(o.dur))); err != nil {
			return fail(err)
		}
		c1, t1 := count(), time.Now()
		rates = append(rates, float64(c1-c)/t1.Sub(tc).Seconds())
		c, tc = c1, t1
	}
	u1, err := usage(t)
	if err != nil {
		return fail(err)
	}
	elapsed := time.Since(t0)
	stop()
	if err := <-errc; err != nil {
		return w, err
	}
	w.rate = summarize(rates).med
	if t.proc != nil {
		w.cpuPct = float64(u1.cpuTicks-u0.cpuTicks) / clockTicks / elapsed.Seconds() * 100
	}
	return w, nil
}

// usage reads the proxy's usage, or nothing for direct.
func usage(t target) (procUsage, error) {
	if t.proc == nil {
		return procUsage{}, nil
	}
	return readUsage(t.proc.pid())
}

// orDone explains workers that ended early without an error: the run was
// cancelled from outside.
func orDone(err error, ctx context.Context) error {
	if err == nil {
		if err = ctx.Err(); err == nil {
			err = errors.New("workers ended early")
		}
	}
	return err
}

// sleepCtx sleeps for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// dial connects to addr and sends the backend mode byte with first, so
// that both go out in one segment. The connection's deadline is set when
// ctx is done, which unblocks a worker stuck in Read or Write; stop undoes
// that.
func dial(ctx context.Context, addr string, mode byte, first []byte) (c *net.TCPConn, stopAfter func() bool, err error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dialing %s: %w", addr, err)
	}
	c = nc.(*net.TCPConn)
	stopAfter = context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	if _, err := c.Write(append([]byte{mode}, first...)); err != nil {
		stopAfter()
		c.Close()
		return nil, nil, fmt.Errorf("writing to %s: %w", addr, err)
	}
	return c, stopAfter, nil
}

// throughput streams bytes through t on streams connections and reports
// Gbit/s and the proxy's CPU. Client to backend (up), the backend counts
// what it receives; backend to client (down), the clients count what they
// read, so that either way the receiver's count is the figure.
func throughput(ctx context.Context, t target, o runOpts, streams int, down bool) (map[string]float64, error) {
	count, mode := t.be.sinkBytes.Load, byte(modeSink)
	var read atomic.Int64
	if down {
		count, mode = read.Load, modeSource
	}
	w, err := measure(ctx, t, o, streams, count, func(ctx context.Context, _ int) error {
		c, stopAfter, err := dial(ctx, t.addr, mode, nil)
		if err != nil {
			return err
		}
		defer c.Close()
		defer stopAfter()
		buf := make([]byte, 256<<10)
		for ctx.Err() == nil {
			if down {
				n, err := c.Read(buf)
				read.Add(int64(n))
				if err != nil {
					return fmt.Errorf("reading stream: %w", err)
				}
				continue
			}
			if _, err := c.Write(buf); err != nil {
				return fmt.Errorf("streaming: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return map[string]float64{
		"gbps": w.rate * 8 / 1e9,
		"cpu":  w.cpuPct,
	}, nil
}

// keepAlive sends small requests over conns persistent connections, one
// outstanding per connection, and reports requests per second.
func keepAlive(ctx context.Context, t target, o runOpts, conns int) (map[string]float64, error) {
	var done atomic.Int64
	w, err := measure(ctx, t, o, conns, done.Load, func(ctx context.Context, _ int) error {
		req, resp := make([]byte, reqSize), make([]byte, reqSize)
		c, stopAfter, err := dial(ctx, t.addr, modeEcho, req)
		if err != nil {
			return err
		}
		defer c.Close()
		defer stopAfter()
		for {
			if _, err := io.ReadFull(c, resp); err != nil {
				return fmt.Errorf("reading response: %w", err)
			}
			done.Add(1)
			if ctx.Err() != nil {
				return nil
			}
			if _, err := c.Write(req); err != nil {
				return fmt.Errorf("writing request: %w", err)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return map[string]float64{
		"rps": w.rate,
		"cpu": w.cpuPct,
	}, nil
}

// newConns opens a connection per exchange with n concurrent clients: one
// request, one response, then the backend closes first (as HTTP/1.0 would)
// so that TIME_WAIT stays on the servers' side, not on the client's
// ephemeral ports.
func newConns(ctx context.Context, t target, o runOpts, n int) (map[string]float64, error) {
	var done atomic.Int64
	w, err := measure(ctx, t, o, n, done.Load, func(ctx context.Context, _ int) error {
		req, resp := make([]byte, reqSize), make([]byte, reqSize+1)
		for ctx.Err() == nil {
			if err := oneExchange(ctx, t.addr, req, resp); err != nil {
				return err
			}
			done.Add(1)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return map[string]float64{
		"cps": w.rate,
		"cpu": w.cpuPct,
	}, nil
}

// oneExchange connects, makes one request, reads the response and waits
// for the backend's close to come through.
func oneExchange(ctx context.Context, addr string, req, resp []byte) error {
	c, stopAfter, err := dial(ctx, addr, modeClose, req)
	if err != nil {
		return err
	}
	defer c.Close()
	defer stopAfter()
	// ReadAtLeast into one spare byte: the response, then EOF.
	n, err := io.ReadAtLeast(c, resp, len(resp))
	if n != reqSize || !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("reading response and close: got %d bytes: %w", n, err)
	}
	return nil
}
