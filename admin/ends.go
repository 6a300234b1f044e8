package admin

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	descTCPConns = prometheus.NewDesc("sluice_tcp_connections_total",
		"TCP connections that ended, by listener, pool, backend and how they ended (the log line's end).", []string{"listener", "pool", "backend", "end"}, nil)
	descTCPIn = prometheus.NewDesc("sluice_tcp_received_bytes_total",
		"Bytes received from clients on TCP connections that ended (the log's bytes_in).", []string{"listener", "pool", "backend"}, nil)
	descTCPOut = prometheus.NewDesc("sluice_tcp_sent_bytes_total",
		"Bytes sent to clients on TCP connections that ended (the log's bytes_out).", []string{"listener", "pool", "backend"}, nil)
	descTCPRetries = prometheus.NewDesc("sluice_tcp_retries_total",
		"Failed connects before each TCP connection's last attempt, by the backend finally used (the log's retries).", []string{"listener", "pool", "backend"}, nil)
	descUDPEnds = prometheus.NewDesc("sluice_udp_sessions_total",
		"UDP sessions that ended, by listener, pool, backend and how they ended (the log line's end).", []string{"listener", "pool", "backend", "end"}, nil)
	descUDPIn = prometheus.NewDesc("sluice_udp_received_bytes_total",
		"Bytes received from clients in UDP sessions that ended (the log's bytes_in).", []string{"listener", "pool", "backend"}, nil)
	descUDPOut = prometheus.NewDesc("sluice_udp_sent_bytes_total",
		"Bytes sent to clients in UDP sessions that ended (the log's bytes_out).", []string{"listener", "pool", "backend"}, nil)
)

// endCollector writes the counters the log lines added up, summing the
// byte and retry counts of a listener and backend over the ways their
// connections ended.
type endCollector struct{ m *Metrics }

// Describe sends nothing: the collector is unchecked, its series appear
// as connections end.
func (c *endCollector) Describe(chan<- *prometheus.Desc) {}

type sumKey struct {
	udp               bool
	listener, backend string
}

// Collect implements prometheus.Collector.
func (c *endCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m.ends.m.Load()
	if m == nil {
		return
	}
	type sums struct{ in, out, retries uint64 }
	total := map[sumKey]*sums{}
	for k, e := range *m {
		pool := c.m.poolOf[k.listener]
		desc := descTCPConns
		if k.udp {
			desc = descUDPEnds
		}
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(e.ends.Load()), k.listener, pool, k.backend, k.end)
		sk := sumKey{k.udp, k.listener, k.backend}
		s := total[sk]
		if s == nil {
			s = &sums{}
			total[sk] = s
		}
		s.in += e.in.Load()
		s.out += e.out.Load()
		s.retries += e.retries.Load()
	}
	for k, s := range total {
		pool := c.m.poolOf[k.listener]
		in, out := descTCPIn, descTCPOut
		if k.udp {
			in, out = descUDPIn, descUDPOut
		} else {
			ch <- prometheus.MustNewConstMetric(descTCPRetries, prometheus.CounterValue, float64(s.retries), k.listener, pool, k.backend)
		}
		ch <- prometheus.MustNewConstMetric(in, prometheus.CounterValue, float64(s.in), k.listener, pool, k.backend)
		ch <- prometheus.MustNewConstMetric(out, prometheus.CounterValue, float64(s.out), k.listener, pool, k.backend)
	}
}
