package admin

import (
	"maps"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"sluice/internal/pool"
	"sluice/l4"
	"sluice/l4/udp"
	"sluice/l7"
)

// Metrics holds a running configuration's Prometheus metrics: the typed
// counters each listener's proxies keep (TCP, UDP, HTTP: made here, one
// per listener name, so they outlive the proxies a reload replaces), the
// health checks' (Prober), and gauges read from the pools and the UDP
// servers, all read when /metrics is scraped. Build it with NewMetrics;
// nothing is global, so two configurations have two registries.
type Metrics struct {
	reg *prometheus.Registry

	checks    *prometheus.CounterVec
	checkTime *prometheus.HistogramVec

	pools   atomic.Pointer[PoolNames] // replaced by a reload (SetPoolNames)
	tcp     cache[string, *l4.Counters]
	udp     cache[string, *udp.Counters]
	http    cache[string, *l7.Counters]
	state   atomic.Pointer[stateCollector] // the running configuration's
	stateMu sync.Mutex                     // guards registering state's collector once
	stateOn bool
	bgpOn   bool // the BGP collector is registered (under stateMu too)
	reloads *prometheus.CounterVec
	caches  atomic.Pointer[map[string]Cache] // the running configuration's (see caches.go)

	lastMu sync.Mutex // guards last; taken per check and per API read, never per connection
	last   map[*pool.Backend]*atomic.Pointer[Check]
}

// kind is the proxy a log line comes from.
type kind uint8

const (
	kindTCP  kind = iota // "connection" lines of l4
	kindUDP              // "session" lines of l4/udp
	kindHTTP             // "request" lines of l7
	kinds
)

// kindOf returns the kind of a listener's protocol name.
func kindOf(protocol string) kind {
	switch protocol {
	case "udp":
		return kindUDP
	case "http":
		return kindHTTP
	}
	return kindTCP
}

// endKey names a series of the ended connections, sessions or requests,
// by their log lines' keys. Route and status are an HTTP request's; zero
// for the others.
type endKey struct {
	kind              kind
	listener, backend string
	end               string
	route             string
	status            int64
}

// Buckets of the health checks' duration histogram, in seconds: from half
// a millisecond to their timeouts. The proxies' histograms have theirs in
// package tally.
var checkBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// PoolNames says which pool a connection, session or request went to,
// for the pool label of the counters.
type PoolNames struct {
	// Listener maps a listener's name to its pool's (an HTTP listener's
	// default pool, if it has one).
	Listener map[string]string
	// Route maps an HTTP listener's name and a route's name to the
	// route's pool.
	Route map[[2]string]string
}

// of returns the pool of k's line, "" if unknown (an HTTP request
// answered by sluice itself).
func (n PoolNames) of(k endKey) string {
	if k.kind == kindHTTP && k.route != "default" {
		return n.Route[[2]string{k.listener, k.route}]
	}
	return n.Listener[k.listener]
}

// NewMetrics builds the metrics of a configuration whose pools are named
// by pools; version labels sluice_build_info. The gauges of pools and
// listeners join when a Server is built over them.
func NewMetrics(pools PoolNames, version string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), last: make(map[*pool.Backend]*atomic.Pointer[Check])}
	m.pools.Store(&pools)
	m.reloads = m.counter("sluice_reloads_total", "Configuration reloads, by result (ok or failed).", []string{"result"})
	m.checks = m.counter("sluice_health_checks_total", "Active health checks run, by pool, backend and result (pass or fail).", []string{"pool", "backend", "result"})
	m.checkTime = m.histogram("sluice_health_check_duration_seconds", "How long active health checks took, passing or failing.", []string{"pool", "backend"}, checkBuckets)
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_build_info", Help: "Always 1; its labels say which sluice is running."}, []string{"version", "goversion"})
	info.WithLabelValues(version, runtime.Version()).Set(1)
	m.reg.MustRegister(info, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&endCollector{m}, cacheFollower{&m.caches})
	return m
}

func (m *Metrics) counter(name, help string, labels []string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	m.reg.MustRegister(v)
	return v
}

func (m *Metrics) histogram(name, help string, labels []string, buckets []float64) *prometheus.HistogramVec {
	v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	m.reg.MustRegister(v)
	return v
}

// SetPoolNames names the pools of the configuration a reload put in
// place; lines counted from then on are labelled with them.
func (m *Metrics) SetPoolNames(pools PoolNames) { m.pools.Store(&pools) }

// Reloaded counts one reload of the configuration, applied or failed.
func (m *Metrics) Reloaded(ok bool) {
	result := "failed"
	if ok {
		result = "ok"
	}
	m.reloads.WithLabelValues(result).Inc()
}

// setState makes the gauges follow listeners and pools, those of the
// configuration now running. The collector is registered once and reads
// the latest set: an unchecked collector cannot be unregistered, and two
// would report each series twice.
func (m *Metrics) setState(listeners []Listener, pools []*pool.Pool) {
	m.state.Store(&stateCollector{listeners: listeners, pools: pools})
	m.stateMu.Lock()
	defer m.stateMu.Unlock()
	if !m.stateOn {
		m.stateOn = true
		m.reg.MustRegister(stateFollower{m})
	}
}

// stateFollower collects the state of the running configuration.
type stateFollower struct{ m *Metrics }

// Describe sends nothing: see stateCollector.
func (stateFollower) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (f stateFollower) Collect(ch chan<- prometheus.Metric) {
	if c := f.m.state.Load(); c != nil {
		c.Collect(ch)
	}
}

// Registry returns the registry /metrics serves, for tests and for
// embedding sluice's metrics elsewhere.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// TCPCounters returns the counters of TCP listener name, made the first
// time: every l4.Server over that listener shares them.
func (m *Metrics) TCPCounters(name string) *l4.Counters {
	return m.tcp.get(name, l4.NewCounters)
}

// UDPCounters returns the counters of UDP listener name, made the first
// time.
func (m *Metrics) UDPCounters(name string) *udp.Counters {
	return m.udp.get(name, udp.NewCounters)
}

// HTTPCounters returns the counters of HTTP listener name, made the first
// time.
func (m *Metrics) HTTPCounters(name string) *l7.Counters {
	return m.http.get(name, l7.NewCounters)
}

// cache maps keys to values made once, for readers that must not take a
// lock: the map is replaced whole (copied) when a key is added, which
// happens once per key over a configuration's life.
type cache[K comparable, V any] struct {
	m  atomic.Pointer[map[K]V]
	mu sync.Mutex // serialises additions
}

// get returns k's value, making it with build the first time.
func (c *cache[K, V]) get(k K, build func() V) V {
	if m := c.m.Load(); m != nil {
		if v, ok := (*m)[k]; ok {
			return v
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	next := map[K]V{}
	if m := c.m.Load(); m != nil {
		if v, ok := (*m)[k]; ok {
			return v
		}
		next = maps.Clone(*m)
	}
	v := build()
	next[k] = v
	c.m.Store(&next)
	return v
}

// lookup returns k's value if it has been made.
func (c *cache[K, V]) lookup(k K) (V, bool) {
	if m := c.m.Load(); m != nil {
		v, ok := (*m)[k]
		return v, ok
	}
	var zero V
	return zero, false
}

// each calls f with every key and value, in no order.
func (c *cache[K, V]) each(f func(K, V)) {
	if m := c.m.Load(); m != nil {
		for k, v := range *m {
			f(k, v)
		}
	}
}

// stateCollector reads the gauges and the UDP servers' counters at
// scrape time: the pools and servers keep them as atomics of their own,
// so nothing on their paths changes for metrics.
type stateCollector struct {
	listeners []Listener
	pools     []*pool.Pool
}

var (
	descState = prometheus.NewDesc("sluice_backend_state",
		"1 for the state each backend is in (up, down, draining, maintenance), 0 for the others.", []string{"pool", "backend", "state"}, nil)
	descActive = prometheus.NewDesc("sluice_backend_active_connections",
		"Live TCP connections and UDP sessions to each backend.", []string{"pool", "backend"}, nil)
	descWeight = prometheus.NewDesc("sluice_backend_weight",
		"Each backend's configured weight.", []string{"pool", "backend"}, nil)
	descBackup = prometheus.NewDesc("sluice_backend_backup",
		"1 for a backup backend (used while no other is up), else 0.", []string{"pool", "backend"}, nil)
	descUDPSessions = prometheus.NewDesc("sluice_udp_sessions",
		"Live UDP sessions of each listener.", []string{"listener"}, nil)
	descUDPDatagrams = prometheus.NewDesc("sluice_udp_datagrams_total",
		"UDP datagrams moved, by listener and direction: from_clients, to_backends, from_backends, to_clients.", []string{"listener", "direction"}, nil)
	descUDPDropped = prometheus.NewDesc("sluice_udp_dropped_datagrams_total",
		"UDP datagrams dropped, by listener and reason: session_cap, no_backend, socket (no socket to the backend), draining, send_failed.", []string{"listener", "reason"}, nil)
	descCertExpiry = prometheus.NewDesc("sluice_certificate_expiry_timestamp_seconds",
		"When each certificate a TLS listener serves expires, in seconds since the epoch (alert on this minus time()).", []string{"listener", "cert_file"}, nil)
	descUDPEvicted = prometheus.NewDesc("sluice_udp_evicted_sessions_total",
		"UDP sessions ended to make room for a new flow at max_sessions (end=evicted).", []string{"listener"}, nil)
)

var states = []pool.State{pool.StateUp, pool.StateDown, pool.StateDraining, pool.StateMaintenance}

// Describe sends nothing: the collector is unchecked, since its series
// follow the pools' backends.
func (c *stateCollector) Describe(chan<- *prometheus.Desc) {}

// Collect reads every backend's state and every UDP server's counters.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := prometheus.GaugeValue
	for _, p := range c.pools {
		for _, b := range p.Backends() {
			st := b.State()
			for _, s := range states {
				ch <- prometheus.MustNewConstMetric(descState, gauge, bool01(st == s), p.Name(), b.String(), s.String())
			}
			ch <- prometheus.MustNewConstMetric(descActive, gauge, float64(b.Active()), p.Name(), b.String())
			ch <- prometheus.MustNewConstMetric(descWeight, gauge, float64(backendWeight(b)), p.Name(), b.String())
			ch <- prometheus.MustNewConstMetric(descBackup, gauge, bool01(backendBackup(b)), p.Name(), b.String())
		}
	}
	for _, l := range c.listeners {
		if l.Certificates != nil {
			for _, cert := range l.Certificates() {
				ch <- prometheus.MustNewConstMetric(descCertExpiry, gauge, float64(cert.NotAfter.Unix()), l.Name, cert.File)
			}
		}
		if l.UDP == nil {
			continue
		}
		st := l.UDP()
		counter := prometheus.CounterValue
		ch <- prometheus.MustNewConstMetric(descUDPSessions, gauge, float64(st.Sessions), l.Name)
		for _, d := range udpDirections(st) {
			ch <- prometheus.MustNewConstMetric(descUDPDatagrams, counter, float64(d.n), l.Name, d.name)
		}
		for _, d := range udpDrops(st) {
			ch <- prometheus.MustNewConstMetric(descUDPDropped, counter, float64(d.n), l.Name, d.name)
		}
		ch <- prometheus.MustNewConstMetric(descUDPEvicted, counter, float64(st.Evicted), l.Name)
	}
}

type namedCount struct {
	name string
	n    uint64
}

func udpDirections(st udp.Stats) []namedCount {
	return []namedCount{{"from_clients", st.FromClients}, {"to_backends", st.ToBackends},
		{"from_backends", st.FromBackends}, {"to_clients", st.ToClients}}
}

func udpDrops(st udp.Stats) []namedCount {
	return []namedCount{{"session_cap", st.DroppedSessionCap}, {"no_backend", st.DroppedNoBackend},
		{"socket", st.DroppedSocket}, {"draining", st.DroppedDraining}, {"send_failed", st.SendFailed}}
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
