package main

import (
	"context"
	"fmt"
	"time"
)

// settings are the knobs of one bench run, from the flags.
type settings struct {
	reps      int
	warm, dur time.Duration
	idleConns int
	settle    time.Duration // wait before reading memory in the idle scenario
	cores     int           // proxy threads, workers or GOMAXPROCS
	proxyCPUs string        // taskset list for the proxies when pinned
	// quietBudget is how long the whole run may wait, in all, for other
	// processes on a shared machine to quieten down before a scenario.
	quietBudget time.Duration
}

// scenario is one kind of load. Each yields one or more metrics (rows of
// the report). A scenario names the protocol it needs; a system without it
// (HAProxy and UDP) is skipped.
type scenario struct {
	key   string
	short string // chart label
	title func(s settings) string
	proto string // "tcp" or "udp"; later "l7"
	// fresh scenarios run first in a repetition, on proxies started for
	// that repetition, because they measure memory growth.
	fresh   bool
	run     func(ctx context.Context, t target, s settings) (map[string]float64, error)
	metrics []metric
}

// metric is one row of the report.
type metric struct {
	key         string // key in the scenario's result map
	label       string
	unit        string
	format      string // fmt verb for one value
	lowerBetter bool
	proxyOnly   bool // direct has no proxy process, so no value
	// overDirect derives the row from another metric of the same
	// scenario minus direct's value in the same repetition.
	overDirect string
}

func (m metric) better(a, b float64) bool {
	if m.lowerBetter {
		return a < b
	}
	return a > b
}

// Load shapes, fixed so that runs compare.
const (
	keepAliveConns = 32
	newConnClients = 16
	latencyRate    = 2000 // requests per second, in total
	latencyConns   = 8
)

// cpuMetric is the proxy's CPU over a load scenario's window.
var cpuMetric = metric{key: "cpu", label: "proxy CPU", unit: "% of a core", format: "%.0f", lowerBetter: true, proxyOnly: true}

// scenarios are run in this order in every repetition.
var scenarios = []*scenario{
	{
		key:   "idle",
		short: "idle",
		title: func(s settings) string { return fmt.Sprintf("idle connections (%d held %v)", s.idleConns, s.settle) },
		proto: "tcp", fresh: true,
		run: func(ctx context.Context, t target, s settings) (map[string]float64, error) {
			return idle(ctx, t, s.idleConns, s.settle)
		},
		metrics: []metric{
			{key: "rss_kb", label: "proxy RSS per connection", unit: "KB", format: "%.1f", lowerBetter: true, proxyOnly: true},
			{key: "fds", label: "proxy fds per connection", unit: "fds", format: "%.2f", lowerBetter: true, proxyOnly: true},
			{key: "machine_kb", label: "machine memory per connection", unit: "KB", format: "%.1f", lowerBetter: true},
			{key: "machine_added_kb", label: "machine memory per connection, added over direct", unit: "KB", format: "%.1f", lowerBetter: true, proxyOnly: true, overDirect: "machine_kb"},
		},
	},
	{
		key:   "tcp1",
		short: "TCP 1 stream",
		title: func(settings) string { return "TCP throughput, 1 stream" },
		proto: "tcp",
		run: func(ctx context.Context, t target, s settings) (map[string]float64, error) {
			return throughput(ctx, t, s.opts(), 1)
		},
		metrics: []metric{{key: "gbps", label: "throughput", unit: "Gbit/s", format: "%.2f"}, cpuMetric},
	},
	{
		key:   "tcp4",
		short: "TCP 4 streams",
		title: func(settings) string { return "TCP throughput, 4 streams" },
		proto: "tcp",
		run: func(ctx context.Context, t target, s settings) (map[string]float64, error) {
			return throughput(ctx, t, s.opts(), 4)
		},
		metrics: []metric{{key: "gbps", label: "throughput", unit: "Gbit/s", format: "%.2f"}, cpuMetric},
	},
	{
		key:   "keepalive",
		short: "keep-alive",
		title: func(settings) string {
			return fmt.Sprintf("keep-alive requests, %d connections, %d B each way", keepAliveConns, reqSize)
		},
		proto: "tcp",
		run: func(ctx context.Context, t target, s settings) (map[string]float64, error) {
			return keepAlive(ctx, t, s.opts(), keepAliveConns)
		},
		metrics: []metric{{key: "rps", label: "requests", unit: "req/s", format: "%.0f"}, cpuMetric},
	},
	{
		key:   "newconn",
		short: "new connections",
		title: func(settings) string {
			return fmt.Sprintf("new connections, %d clients, one exchange each", newConnClients)
		},
		proto: "tcp",
		run: func(ctx context.Context, t target, s settings) (map[string]float64, error) {
			return newConns(ctx, t, s.opts(), newConnClients)
		},
		metrics: []metric{{key: "cps", label: "connections", unit: "conn/s", format: "%.0f"}, cpuMetric},
	},
	{
		key:   "latency",
		short: "latency",
		title: func(settings) string {
			return fmt.Sprintf("latency at %d req/s, %d keep-alive connections", latencyRate, latencyConns)
		},
		proto: "tcp",
		run: func(ctx context.Context, t target, s settings) (map[string]float64, error) {
			return latency(ctx, t, s.opts(), latencyRate, latencyConns)
		},
		metrics: []metric{
			{key: "p50", label: "p50", unit: "µs", format: "%.0f", lowerBetter: true},
			{key: "p99", label: "p99", unit: "µs", format: "%.0f", lowerBetter: true},
			{key: "p99_added", label: "p99 added over direct", unit: "µs", format: "%.0f", lowerBetter: true, proxyOnly: true, overDirect: "p99"},
		},
	},
	{
		key:   "udp",
		short: "UDP",
		title: func(settings) string {
			return fmt.Sprintf("UDP at full rate, %d flows of %d B datagrams, echoed", udpFlows, udpSize)
		},
		proto: "udp",
		run: func(ctx context.Context, t target, s settings) (map[string]float64, error) {
			return udpFullRate(ctx, t, s.opts())
		},
		metrics: []metric{
			{key: "dps", label: "datagrams echoed", unit: "datagrams/s", format: "%.0f"},
			{key: "loss", label: "loss", unit: "% of sent", format: "%.2f", lowerBetter: true},
			cpuMetric,
		},
	},
}

// opts are the load lengths of the timed scenarios.
func (s settings) opts() runOpts { return runOpts{warm: s.warm, dur: s.dur} }

// pickScenarios returns the scenarios named in keys ("all" for every one),
// in their run order.
func pickScenarios(keys []string) ([]*scenario, error) {
	return pick(scenarios, keys, func(s *scenario) string { return s.key })
}

// pickSystems returns the systems named in keys ("all" for every one).
func pickSystems(keys []string) ([]*system, error) {
	return pick(allSystems, keys, func(s *system) string { return s.key })
}

// pick selects items by key, keeping their order in all.
func pick[T any](all []T, keys []string, key func(T) string) ([]T, error) {
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	var out []T
	for _, it := range all {
		if want["all"] || want[key(it)] {
			out = append(out, it)
			delete(want, key(it))
		}
	}
	delete(want, "all")
	for k := range want {
		return nil, fmt.Errorf("picking %q: no such name", k)
	}
	return out, nil
}
