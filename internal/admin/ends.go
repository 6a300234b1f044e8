package admin

import (
	"net/netip"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"sluice/internal/tally"
	"sluice/l4"
	"sluice/l4/udp"
	"sluice/l7"
)

// The counters of ended connections, sessions and requests, by kind: ended, received and sent bytes,
// retries (nil: the kind has none).
var endDescs = [kinds]struct{ ends, in, out, retries *prometheus.Desc }{
	kindTCP: {
		ends: prometheus.NewDesc("sluice_tcp_connections_total",
			"TCP connections that ended, by listener, pool, backend and how they ended (the log line's end).", []string{"listener", "pool", "backend", "end"}, nil),
		in: prometheus.NewDesc("sluice_tcp_received_bytes_total",
			"Bytes received from clients on TCP connections that ended (the log's bytes_in).", []string{"listener", "pool", "backend"}, nil),
		out: prometheus.NewDesc("sluice_tcp_sent_bytes_total",
			"Bytes sent to clients on TCP connections that ended (the log's bytes_out).", []string{"listener", "pool", "backend"}, nil),
		retries: prometheus.NewDesc("sluice_tcp_retries_total",
			"Failed connects before each TCP connection's last attempt, by the backend finally used (the log's retries).", []string{"listener", "pool", "backend"}, nil),
	},
	kindUDP: {
		ends: prometheus.NewDesc("sluice_udp_sessions_total",
			"UDP sessions that ended, by listener, pool, backend and how they ended (the log line's end).", []string{"listener", "pool", "backend", "end"}, nil),
		in: prometheus.NewDesc("sluice_udp_received_bytes_total",
			"Bytes received from clients in UDP sessions that ended (the log's bytes_in).", []string{"listener", "pool", "backend"}, nil),
		out: prometheus.NewDesc("sluice_udp_sent_bytes_total",
			"Bytes sent to clients in UDP sessions that ended (the log's bytes_out).", []string{"listener", "pool", "backend"}, nil),
	},
	kindHTTP: {
		ends: prometheus.NewDesc("sluice_http_requests_total",
			"HTTP requests answered, by listener, route, pool, backend, status code and how they ended (the log line's end).", []string{"listener", "route", "pool", "backend", "code", "end"}, nil),
		in: prometheus.NewDesc("sluice_http_received_bytes_total",
			"Request body bytes received from clients (the log's bytes_in).", []string{"listener", "route", "pool", "backend"}, nil),
		out: prometheus.NewDesc("sluice_http_sent_bytes_total",
			"Response body bytes sent to clients (the log's bytes_out).", []string{"listener", "route", "pool", "backend"}, nil),
		retries: prometheus.NewDesc("sluice_http_retries_total",
			"Failed attempts on other backends before each request's last one (the log's retries).", []string{"listener", "route", "pool", "backend"}, nil),
	},
}

// endCollector writes the listeners' counters: the ended connections,
// sessions and requests by key (summing the byte and retry counts of a
// listener and backend, and route, over the ways they ended), the
// duration and connect-time histograms, and the live gauges.
type endCollector struct{ m *Metrics }

// Describe sends nothing: the collector is unchecked, its series appear
// as connections end.
func (c *endCollector) Describe(chan<- *prometheus.Desc) {}

type sumKey struct {
	kind                     kind
	listener, route, backend string
}

// Collect implements prometheus.Collector.
func (c *endCollector) Collect(ch chan<- prometheus.Metric) {
	type sums struct {
		pool             string
		in, out, retries uint64
	}
	names := c.m.pools.Load()
	total := map[sumKey]*sums{}
	counter := prometheus.CounterValue
	for k, e := range c.m.snapshot() {
		d := endDescs[k.kind]
		pool := names.of(k)
		if k.kind == kindHTTP {
			ch <- prometheus.MustNewConstMetric(d.ends, counter, float64(e.ends), k.listener, k.route, pool, k.backend,
				strconv.FormatInt(k.status, 10), k.end)
		} else {
			ch <- prometheus.MustNewConstMetric(d.ends, counter, float64(e.ends), k.listener, pool, k.backend, k.end)
		}
		sk := sumKey{k.kind, k.listener, k.route, k.backend}
		s := total[sk]
		if s == nil {
			s = &sums{pool: pool}
			total[sk] = s
		}
		s.in += e.in
		s.out += e.out
		s.retries += e.retries
	}
	for k, s := range total {
		d := endDescs[k.kind]
		labels := []string{k.listener, s.pool, k.backend}
		if k.kind == kindHTTP {
			labels = []string{k.listener, k.route, s.pool, k.backend}
		}
		ch <- prometheus.MustNewConstMetric(d.in, counter, float64(s.in), labels...)
		ch <- prometheus.MustNewConstMetric(d.out, counter, float64(s.out), labels...)
		if d.retries != nil {
			ch <- prometheus.MustNewConstMetric(d.retries, counter, float64(s.retries), labels...)
		}
	}
	c.live(ch, names)
}

var (
	descTCPDuration = prometheus.NewDesc("sluice_tcp_connection_duration_seconds",
		"How long TCP connections lasted, from accept to close.", []string{"listener"}, nil)
	descTCPConnect = prometheus.NewDesc("sluice_tcp_connect_duration_seconds",
		"How long successful connects to backends took, from the connect call until the socket was writable.", []string{"listener"}, nil)
	descTCPCurrent = prometheus.NewDesc("sluice_tcp_connections_current",
		"Live TCP connections of each listener: accepted and not yet ended.", []string{"listener"}, nil)
	descTCPBackendCurrent = prometheus.NewDesc("sluice_tcp_backend_connections_current",
		"Live TCP connections established to each backend through each listener.", []string{"listener", "pool", "backend"}, nil)
	descUDPDuration = prometheus.NewDesc("sluice_udp_session_duration_seconds",
		"How long UDP sessions lasted.", []string{"listener"}, nil)
	descUDPBackendCurrent = prometheus.NewDesc("sluice_udp_backend_sessions_current",
		"Live UDP sessions with each backend through each listener.", []string{"listener", "pool", "backend"}, nil)
	descHTTPDuration = prometheus.NewDesc("sluice_http_request_duration_seconds",
		"How long HTTP requests took, from their first byte to the response's last.", []string{"listener"}, nil)
	descHTTPCurrent = prometheus.NewDesc("sluice_http_requests_current",
		"HTTP requests in flight on each listener.", []string{"listener"}, nil)
)

// live writes the histograms and the live gauges of every listener.
func (c *endCollector) live(ch chan<- prometheus.Metric, names *PoolNames) {
	gauge := prometheus.GaugeValue
	c.m.tcp.each(func(name string, t *l4.Counters) {
		ch <- histogram(descTCPDuration, t.Duration(), name)
		ch <- histogram(descTCPConnect, t.ConnectTime(), name)
		ch <- prometheus.MustNewConstMetric(descTCPCurrent, gauge, float64(t.Live()), name)
		pool := names.of(endKey{kind: kindTCP, listener: name})
		t.Backends(func(addr netip.AddrPort, b *l4.BackendCounters) {
			if addr.IsValid() {
				ch <- prometheus.MustNewConstMetric(descTCPBackendCurrent, gauge, float64(b.Live()), name, pool, addr.String())
			}
		})
	})
	c.m.udp.each(func(name string, u *udp.Counters) {
		ch <- histogram(descUDPDuration, u.Duration(), name)
		pool := names.of(endKey{kind: kindUDP, listener: name})
		u.Backends(func(addr netip.AddrPort, b *udp.BackendCounters) {
			ch <- prometheus.MustNewConstMetric(descUDPBackendCurrent, gauge, float64(b.Live()), name, pool, addr.String())
		})
	})
	c.m.http.each(func(name string, h *l7.Counters) {
		ch <- histogram(descHTTPDuration, h.Duration(), name)
		ch <- prometheus.MustNewConstMetric(descHTTPCurrent, gauge, float64(h.Current()), name)
	})
}

// histogram makes a Prometheus histogram of s.
func histogram(d *prometheus.Desc, s tally.Snapshot, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(s.Bounds))
	for i, b := range s.Bounds {
		buckets[b.Seconds()] = s.Cumulative[i]
	}
	return prometheus.MustNewConstHistogram(d, s.Count, s.Sum.Seconds(), buckets, labels...)
}
