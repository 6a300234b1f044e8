package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
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
	tools       clientTools // the real clients' programs
}

// clientTools are the programs of the real-client scenarios, found (and
// installed) only when a chosen scenario needs them.
type clientTools struct {
	pg         pgTools // PostgreSQL's bin directory: postgres, initdb, pgbench
	redis      string  // redis-server
	redisBench string  // redis-benchmark
	h2load     string  // h2load, Debian's nghttp2-client
}

// scenario is one kind of load. Each yields one or more metrics (rows of
// the report). A scenario names the protocol it needs; a system without it
// (HAProxy and UDP) is skipped.
type scenario struct {
	key   string
	short string // chart label
	title func(s settings) string
	proto string // "tcp", "udp", "http" (HTTP/1.1), "h2" (h2c), "tls" (ended at the proxy) or "sni" (passed through)
	// needs names the database server the scenario's clients talk to
	// ("postgres", "redis"), reached through a relay of its own in each
	// proxy, or the client program it runs ("h2load"); empty for the
	// in-process backends and loads.
	needs string
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
	// perCore derives the row from another metric of the same scenario
	// divided by the proxy's CPU seconds per second ("cpu" / 100) in the
	// same repetition: work per proxy core-second, which does not depend
	// on how the machine's cores were shared between proxy and load.
	perCore string
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

// loadMetrics are the rows of a load scenario: the work rate, the proxy's
// CPU, and the work per proxy core-second.
func loadMetrics(key, label, unit, format, perCoreUnit string) []metric {
	return []metric{
		{key: key, label: label, unit: unit, format: format},
		cpuMetric,
		{key: key + "_core", label: label + " per proxy core-second", unit: perCoreUnit, format: format,
			proxyOnly: true, perCore: key},
	}
}

// throughputScenario streams through the system, client to backend or,
// down, backend to client.
func throughputScenario(streams int, down bool) *scenario {
	key, short, dir := fmt.Sprintf("tcp%d", streams), fmt.Sprintf("TCP %d", streams), "client to backend"
	if down {
		key, short, dir = key+"r", short+" down", "backend to client"
	}
	noun := "streams"
	if streams == 1 {
		noun = "stream"
	}
	return &scenario{
		key:   key,
		short: short,
		title: func(settings) string { return fmt.Sprintf("TCP throughput, %d %s, %s", streams, noun, dir) },
		proto: "tcp",
		run: func(ctx context.Context, t target, s settings) (map[string]float64, error) {
			return throughput(ctx, t, s.opts(), streams, down)
		},
		metrics: loadMetrics("gbps", "throughput", "Gbit/s", "%.2f", "Gbit/core-s"),
	}
}

// pgbenchScenario runs pgbench -S through the postgres relay, on
// persistent connections or, newConn, one per transaction (-C).
func pgbenchScenario(newConn bool) *scenario {
	key, short, title := "pgbench", "pgbench -S", fmt.Sprintf("pgbench -S (select only), %d persistent connections", pgbenchClients)
	if newConn {
		key, short, title = key+"-C", short+" -C", fmt.Sprintf("pgbench -S -C (a connection per transaction), %d clients", pgbenchClients)
	}
	return &scenario{
		key: key, short: short, title: func(settings) string { return title },
		proto: "tcp", needs: "postgres",
		run: func(ctx context.Context, t target, s settings) (map[string]float64, error) {
			return pgbench(ctx, t, s.opts(), s.tools.pg, newConn)
		},
		metrics: loadMetrics("tps", "transactions", "tx/s", "%.0f", "tx/core-s"),
	}
}

// redisScenario runs redis-benchmark GET through the redis relay, on
// keep-alive connections (-k 1) or one per request (-k 0).
func redisScenario(keep bool) *scenario {
	key, short, clients := "redis-k0", "redis-benchmark -k 0", redisNewConnClient
	title := fmt.Sprintf("redis-benchmark GET -k 0 (a connection per request), %d clients", clients)
	if keep {
		key, short, clients = "redis-k1", "redis-benchmark -k 1", redisKeepClients
		title = fmt.Sprintf("redis-benchmark GET -k 1, %d keep-alive connections", clients)
	}
	return &scenario{
		key: key, short: short, title: func(settings) string { return title },
		proto: "tcp", needs: "redis",
		run: func(ctx context.Context, t target, s settings) (map[string]float64, error) {
			return redisBenchmark(ctx, t, s.opts(), s.tools.redisBench, clients, keep)
		},
		metrics: loadMetrics("rps", "requests", "req/s", "%.0f", "req/core-s"),
	}
}

// scenarios are run in this order in every repetition.
var scenarios = append([]*scenario{
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
	throughputScenario(1, false),
	throughputScenario(4, false),
	throughputScenario(1, true),
	throughputScenario(4, true),
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
		metrics: loadMetrics("rps", "requests", "req/s", "%.0f", "req/core-s"),
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
		metrics: loadMetrics("cps", "connections", "conn/s", "%.0f", "conn/core-s"),
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
	pgbenchScenario(false),
	pgbenchScenario(true),
	redisScenario(true),
	redisScenario(false),
	{
		key:   "http-keepalive",
		short: "HTTP keep-alive",
		title: func(settings) string {
			return fmt.Sprintf("HTTP/1.1 keep-alive GETs, %d connections, %d B bodies", httpKeepAliveConns, reqSize)
		},
		proto: "http",
		run: func(ctx context.Context, t target, s settings) (map[string]float64, error) {
			return httpKeepAlive(ctx, t, s.opts(), httpKeepAliveConns)
		},
		metrics: loadMetrics("rps", "requests", "req/s", "%.0f", "req/core-s"),
	},
	{
		key:   "http-newconn",
		short: "HTTP new connections",
		title: func(settings) string {
			return fmt.Sprintf("HTTP/1.1 new connections, %d clients, one GET with Connection: close each", httpNewConnClients)
		},
		proto: "http",
		run: func(ctx context.Context, t target, s settings) (map[string]float64, error) {
			return httpNewConns(ctx, t, s.opts(), httpNewConnClients)
		},
		metrics: loadMetrics("cps", "connections", "conn/s", "%.0f", "conn/core-s"),
	},
	{
		key:   "http-latency",
		short: "HTTP latency",
		title: func(settings) string {
			return fmt.Sprintf("HTTP/1.1 latency at %d req/s, %d keep-alive connections", latencyRate, latencyConns)
		},
		proto: "http",
		run: func(ctx context.Context, t target, s settings) (map[string]float64, error) {
			return httpLatency(ctx, t, s.opts(), latencyRate, latencyConns)
		},
		metrics: []metric{
			{key: "p50", label: "p50", unit: "µs", format: "%.0f", lowerBetter: true},
			{key: "p99", label: "p99", unit: "µs", format: "%.0f", lowerBetter: true},
			{key: "p99_added", label: "p99 added over direct", unit: "µs", format: "%.0f", lowerBetter: true, proxyOnly: true, overDirect: "p99"},
		},
	},
	{
		key:   "http2",
		short: "HTTP/2",
		title: func(settings) string {
			return fmt.Sprintf("HTTP/2 (h2c) GETs with h2load, %d connections x %d streams, HTTP/1.1 to the backend", h2Clients, h2Streams)
		},
		proto: "h2", needs: "h2load",
		run: func(ctx context.Context, t target, s settings) (map[string]float64, error) {
			return h2Load(ctx, t, s.opts(), s.tools.h2load)
		},
		metrics: loadMetrics("rps", "requests", "req/s", "%.0f", "req/core-s"),
	},
	cacheScenario(false),
	cacheScenario(true),
	cacheLatencyScenario(),
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
		metrics: append(loadMetrics("dps", "datagrams echoed", "datagrams/s", "%.0f", "datagrams/core-s"),
			metric{key: "loss", label: "loss", unit: "% of sent", format: "%.2f", lowerBetter: true}),
	},
}, tlsScenarios...)

// opts are the load lengths of the timed scenarios.
func (s settings) opts() runOpts { return runOpts{warm: s.warm, dur: s.dur} }

// scenarioGroups name several scenarios at once for -scenarios and -only.
var scenarioGroups = map[string][]string{
	"throughput": {"tcp1", "tcp4", "tcp1r", "tcp4r"},
	"real":       {"pgbench", "pgbench-C", "redis-k1", "redis-k0"},
	"postgres":   {"pgbench", "pgbench-C"},
	"redis":      {"redis-k1", "redis-k0"},
	"http":       {"http-keepalive", "http-newconn", "http-latency", "http2"},
	"cache":      {"http-cached", "http-cached-100k", "http-cached-latency"},
	"tls":        {"tls-ecdsa", "tls-rsa", "tls-p256", "tls-pq", "tls-bulk", "sni"},
}

// pickScenarios returns the scenarios named in keys ("all" for every one,
// or a group's name for its members), in their run order.
func pickScenarios(keys []string) ([]*scenario, error) {
	var expanded []string
	for _, k := range keys {
		if g, ok := scenarioGroups[k]; ok {
			expanded = append(expanded, g...)
			continue
		}
		expanded = append(expanded, k)
	}
	return pick(scenarios, expanded, func(s *scenario) string { return s.key })
}

// scenarioKeys lists the scenarios' keys for the usage text.
func scenarioKeys() string {
	var keys []string
	for _, sc := range scenarios {
		keys = append(keys, sc.key)
	}
	return strings.Join(keys, ",")
}

// groupKeys lists the scenario groups for the usage text.
func groupKeys() string {
	return strings.Join(slices.Sorted(maps.Keys(scenarioGroups)), ",")
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
