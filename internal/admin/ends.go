package admin

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// The counters of the log lines, by kind: ended, received and sent bytes,
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

// endCollector writes the counters the log lines added up, summing the
// byte and retry counts of a listener and backend (and route) over the
// ways their connections, sessions or requests ended.
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
	m := c.m.ends.m.Load()
	if m == nil {
		return
	}
	type sums struct {
		pool             string
		in, out, retries uint64
	}
	total := map[sumKey]*sums{}
	counter := prometheus.CounterValue
	for k, e := range *m {
		d := endDescs[k.kind]
		pool := c.m.pools.Load().of(k)
		if k.kind == kindHTTP {
			ch <- prometheus.MustNewConstMetric(d.ends, counter, float64(e.ends.Load()), k.listener, k.route, pool, k.backend,
				strconv.FormatInt(k.status, 10), k.end)
		} else {
			ch <- prometheus.MustNewConstMetric(d.ends, counter, float64(e.ends.Load()), k.listener, pool, k.backend, k.end)
		}
		sk := sumKey{k.kind, k.listener, k.route, k.backend}
		s := total[sk]
		if s == nil {
			s = &sums{pool: pool}
			total[sk] = s
		}
		s.in += e.in.Load()
		s.out += e.out.Load()
		s.retries += e.retries.Load()
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
}
