package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Real clients: pgbench against PostgreSQL and redis-benchmark against
// Redis, through a relay of each system (a listener of its own, in the
// same proxy process, whose backend is the server). Both print a rate per
// interval while they run (pgbench -P 1 each second, redis-benchmark about
// every 250 ms); the bench reads those lines as they come, so a real
// client's run has the same shape as the in-process loads: a warm-up, a
// window of slices, the median slice and the proxy's CPU over the window.

// Real-client load shapes, fixed so that runs compare: pgbench like the
// issue's measurements (8 clients), redis-benchmark like the in-process
// keep-alive and new-connection loads.
const (
	pgbenchClients     = 8
	redisKeepClients   = keepAliveConns
	redisNewConnClient = newConnClients
)

// rateLine is what a client's output line says: a rate for the interval
// just ended (ok), a failure (err), or nothing the bench needs.
type rateLine func(line string) (rate float64, ok bool, err error)

// errExitedEarly says a client's output ended before its window did.
var errExitedEarly = errors.New("exited before the window ended")

// clientReport is one parsed interval and when its line arrived.
type clientReport struct {
	rate float64
	at   time.Time
	err  error
}

// runClient runs argv, a load client that prints a rate per interval,
// until it has reported over o.dur after o.warm, and returns the median
// interval rate and the proxy's CPU between the first and the last line
// of the window. A failure the client prints fails the run: a proxy that
// breaks connections gets no figure.
func runClient(ctx context.Context, t target, o runOpts, env []string, parse rateLine, argv ...string) (window, error) {
	w := window{cpuPct: math.NaN()}
	r, pw, err := os.Pipe()
	if err != nil {
		return w, fmt.Errorf("running %s: %w", argv[0], err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = childAttr()
	start := time.Now()
	err = cmd.Start()
	pw.Close() // the child has its own copy; EOF once it exits
	if err != nil {
		r.Close()
		return w, fmt.Errorf("running %s: %w", argv[0], err)
	}
	reports := make(chan clientReport, 64)
	var out lastOutput
	readDone := make(chan struct{})
	go func() { // joined below through readDone
		defer close(readDone)
		defer close(reports)
		readReports(r, parse, &out, reports)
	}()
	w, err = clientWindow(ctx, t, o, start, reports)
	// The client runs until it is stopped: pgbench -T is only a bound,
	// redis-benchmark -n too large to finish.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	for range reports { // unblock the reader until EOF
	}
	<-readDone
	r.Close()
	werr := cmd.Wait()
	if err != nil {
		return w, fmt.Errorf("%s: %w (exit: %v): %s", filepath.Base(argv[0]), err, werr, out.String())
	}
	return w, nil
}

// readReports scans r line by line (redis-benchmark ends its progress lines
// with a carriage return) and sends what parse finds.
func readReports(r *os.File, parse rateLine, out *lastOutput, reports chan<- clientReport) {
	sc := bufio.NewScanner(r)
	sc.Split(scanCRLines)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		out.add(line)
		rate, ok, err := parse(line)
		if ok || err != nil {
			reports <- clientReport{rate: rate, at: time.Now(), err: err}
		}
	}
}

// clientWindow reads reports of a client started at start. A line whose
// interval began before o.warm had passed is warm-up, and so is the first line, whose interval includes
// the connections being made. The window runs from the last warm-up line
// until lines cover o.dur, less half an interval so that one 1 s interval
// fills a 1 s window; the proxy's usage is read at both ends.
func clientWindow(ctx context.Context, t target, o runOpts, start time.Time, reports <-chan clientReport) (window, error) {
	w := window{cpuPct: math.NaN()}
	stall := time.NewTimer(time.Hour)
	defer stall.Stop()
	var (
		u0        procUsage
		t0, last  time.Time // window start; the previous line
		rates     []float64
		stallTime = 10*time.Second + o.warm
	)
	for {
		// A client that stops reporting (a proxy that stopped passing
		// traffic stalls pgbench's clients) is a failure, not a hang.
		stall.Reset(stallTime)
		var rep clientReport
		var ok bool
		select {
		case <-ctx.Done():
			return w, ctx.Err()
		case <-stall.C:
			return w, fmt.Errorf("no progress line for %v", stallTime)
		case rep, ok = <-reports:
		}
		switch {
		case !ok:
			return w, errExitedEarly
		case rep.err != nil:
			return w, rep.err
		case t0.IsZero() && (last.IsZero() || last.Sub(start) < o.warm):
			var err error
			if u0, err = usage(t); err != nil {
				return w, err
			}
			last = rep.at
			continue
		case t0.IsZero():
			t0 = last
		}
		rates = append(rates, rep.rate)
		interval := rep.at.Sub(last)
		last = rep.at
		if rep.at.Sub(t0) < o.dur-interval/2 {
			continue
		}
		u1, err := usage(t)
		if err != nil {
			return w, err
		}
		w.rate = summarize(rates).med
		if t.proc != nil {
			w.cpuPct = float64(u1.cpuTicks-u0.cpuTicks) / clockTicks / rep.at.Sub(t0).Seconds() * 100
		}
		return w, nil
	}
}

// scanCRLines is bufio.ScanLines that also ends a line at '\r'.
func scanCRLines(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// lastOutput keeps a client's last lines for an error message. Only the
// reader writes it, and it is read after the reader is done.
type lastOutput struct{ lines []string }

func (l *lastOutput) add(line string) {
	if len(l.lines) == 5 {
		l.lines = l.lines[1:]
	}
	l.lines = append(l.lines, line)
}

func (l *lastOutput) String() string { return strings.Join(l.lines, " | ") }

// parsePgbench reads pgbench's progress lines, "progress: 2.0 s, 31162.7
// tps, lat 0.258 ms stddev 2.535, 0 failed" (the failed count is new in
// PostgreSQL 15), and its errors ("pgbench: error: ...", "client 3
// aborted ..."), which it prints before going on with fewer clients.
func parsePgbench(line string) (float64, bool, error) {
	if strings.Contains(line, "error:") || strings.Contains(line, "aborted") || strings.HasPrefix(line, "FATAL") {
		return 0, false, fmt.Errorf("pgbench reported: %s", line)
	}
	rest, ok := strings.CutPrefix(line, "progress: ")
	if !ok {
		return 0, false, nil
	}
	fields := strings.Split(rest, ", ")
	if len(fields) < 2 {
		return 0, false, fmt.Errorf("pgbench progress line %q: too few fields", line)
	}
	tps, err := strconv.ParseFloat(strings.TrimSuffix(fields[1], " tps"), 64)
	if err != nil || !strings.HasSuffix(fields[1], " tps") {
		return 0, false, fmt.Errorf("pgbench progress line %q: no tps", line)
	}
	for _, f := range fields[2:] {
		if n, ok := strings.CutSuffix(f, " failed"); ok && n != "0" {
			return 0, false, fmt.Errorf("pgbench reported failed transactions: %s", line)
		}
	}
	return tps, true, nil
}

// parseRedisBenchmark reads redis-benchmark's progress lines, "GET:
// rps=111836.7 (overall: 111836.7) avg_msec=0.091 (overall: 0.091)", the
// rate since the previous line, and its errors ("Error: Connection reset
// by peer", "Could not connect to Redis at ...", after which it exits).
func parseRedisBenchmark(line string) (float64, bool, error) {
	if strings.HasPrefix(line, "Error") || strings.HasPrefix(line, "Could not connect") {
		return 0, false, fmt.Errorf("redis-benchmark reported: %s", line)
	}
	_, rest, ok := strings.Cut(line, ": rps=")
	if !ok {
		return 0, false, nil
	}
	num, _, _ := strings.Cut(rest, " ")
	if strings.TrimLeft(num, "+-") == "nan" {
		return 0, false, nil // before the first reply: no interval yet
	}
	rps, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, false, fmt.Errorf("redis-benchmark progress line %q: bad rate", line)
	}
	return rps, true, nil
}

// pgbench runs select-only transactions through t's postgres relay with
// pgbenchClients clients, on persistent connections or, with newConn, a
// connection per transaction (-C).
func pgbench(ctx context.Context, t target, o runOpts, tools pgTools, newConn bool) (map[string]float64, error) {
	// -T only bounds a run that the bench fails to stop; -n skips the
	// vacuum that pgbench -i did.
	limit := int((o.warm + o.dur).Seconds()) + 30
	argv := []string{tools.bin("pgbench"), "-n", "-S", "-c", strconv.Itoa(pgbenchClients), "-j", "2",
		"-P", "1", "-T", strconv.Itoa(limit)}
	if newConn {
		argv = append(argv, "-C")
	}
	w, err := runClient(ctx, t, o, pgEnv(t.relays["postgres"]), parsePgbench, argv...)
	if err != nil {
		return nil, err
	}
	return map[string]float64{"tps": w.rate, "cpu": w.cpuPct}, nil
}

// redisBenchmark runs GET through t's redis relay with clients
// connections, kept alive or (keep false) one per request.
func redisBenchmark(ctx context.Context, t target, o runOpts, bin string, clients int, keep bool) (map[string]float64, error) {
	host, port, err := net.SplitHostPort(t.relays["redis"])
	if err != nil {
		return nil, fmt.Errorf("redis relay: %w", err)
	}
	k := "0"
	if keep {
		k = "1"
	}
	// -n: more requests than any window takes; the bench stops it.
	w, err := runClient(ctx, t, o, nil, parseRedisBenchmark, bin, "-h", host, "-p", port,
		"-c", strconv.Itoa(clients), "-k", k, "-n", "2000000000", "-t", "get")
	if err != nil {
		return nil, err
	}
	return map[string]float64{"rps": w.rate, "cpu": w.cpuPct}, nil
}
