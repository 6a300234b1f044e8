package main

import (
	"fmt"
	"strings"
)

// A goal is one of the issues' targets for sluice (issue 9 for TCP, 11 for HTTP, 5 for
// UDP, 3 for idle connections), evaluated on the medians of this run. It
// compares sluice's value with a threshold derived from other systems'
// values (or a constant). Every TCP goal is relative to the peers: on 2
// cores the proxy shares the machine with the load, so ratios to direct
// say little, and absolute CPU limits depend on how the cores were shared;
// per proxy core-second rows do not.
type goal struct {
	text     string
	scenario string
	metric   string
	// limit returns the threshold and what it was derived from; ok is
	// false when that system was not measured.
	limit  func(r *results, sc, m string) (v float64, from string, ok bool)
	atMost bool // sluice must be <= limit (else >=)
}

// goals are listed in the report in this order.
var goals = buildGoals()

func buildGoals() []goal {
	var gs []goal
	// Rates of the L4 TCP load scenarios: at least the best peer's,
	// absolute and per proxy core-second.
	for _, r := range []struct{ sc, m, what string }{
		{"keepalive", "rps", "keep-alive request rate"},
		{"newconn", "cps", "new connections per second"},
		{"pgbench", "tps", "pgbench -S transactions per second"},
		{"pgbench-C", "tps", "pgbench -S -C transactions per second"},
		{"redis-k1", "rps", "redis-benchmark -k 1 requests per second"},
		{"redis-k0", "rps", "redis-benchmark -k 0 requests per second"},
	} {
		gs = append(gs,
			goal{r.what + " at least the best peer's", r.sc, r.m, bestOf, false},
			goal{r.what + " per proxy core-second at least the best peer's", r.sc, r.m + "_core", bestOf, false})
	}
	gs = append(gs, goal{"p99 latency added over direct at most the best peer's", "latency", "p99_added", bestOf, true})
	// Bulk throughput: at least the best peer's; per proxy core-second
	// also at least 1.2x HAProxy's with forced splice, both directions.
	for _, r := range []struct{ sc, what string }{
		{"tcp1", "TCP throughput, 1 stream, client to backend,"},
		{"tcp4", "TCP throughput, 4 streams, client to backend,"},
		{"tcp1r", "TCP throughput, 1 stream, backend to client,"},
		{"tcp4r", "TCP throughput, 4 streams, backend to client,"},
	} {
		gs = append(gs,
			goal{r.what + " at least the best peer's", r.sc, "gbps", bestOf, false},
			goal{r.what + " per proxy core-second at least the best peer's and 1.2x HAProxy's", r.sc, "gbps_core",
				maxOf(bestOf, times(haproxySystem, 1.2)), false})
	}
	// TLS (issue 12): handshakes per proxy core-second at least the best
	// peer's with the same key exchange and certificate.
	for _, r := range []struct{ sc, what string }{
		{"tls-ecdsa", "TLS 1.3 full handshakes (ECDSA P-256, X25519)"},
		{"tls-rsa", "TLS 1.3 full handshakes (RSA 2048, X25519)"},
		{"tls-p256", "TLS 1.3 full handshakes (ECDSA P-256, P-256 key exchange)"},
	} {
		gs = append(gs, goal{r.what + " per proxy core-second at least the best peer's", r.sc, "hps_core", bestOf, false})
	}
	gs = append(gs,
		goal{"HTTP/1.1 keep-alive requests per proxy core-second at least 0.45x nginx's (issue 11)", "http-keepalive", "rps_core",
			times(nginxSystem, 0.45), false})
	return append(gs,
		goal{"machine memory per idle connection (added over direct) at most HAProxy's", "idle", "machine_added_kb", times(haproxySystem, 1), true},
		goal{"2 fds per idle connection", "idle", "fds", constant(2.05), true},
		goal{"UDP datagrams per second at full rate at least 2x nginx's", "udp", "dps", times(nginxSystem, 2), false},
		goal{"UDP loss at full rate at most nginx's", "udp", "loss", times(nginxSystem, 1), true},
	)
}

// maxOf is the larger of two limits, or the one that is known.
func maxOf(a, b func(r *results, sc, m string) (float64, string, bool)) func(r *results, sc, m string) (float64, string, bool) {
	return func(r *results, sc, m string) (float64, string, bool) {
		va, fa, oka := a(r, sc, m)
		vb, fb, okb := b(r, sc, m)
		if oka && (!okb || va >= vb) {
			return va, fa, true
		}
		return vb, fb, okb
	}
}

func times(s *system, f float64) func(r *results, sc, m string) (float64, string, bool) {
	return func(r *results, sc, m string) (float64, string, bool) {
		v := r.summary(s.key, sc, m)
		return v.med * f, fmt.Sprintf("%.2fx %s", f, s.name), v.ok()
	}
}

func constant(c float64) func(*results, string, string) (float64, string, bool) {
	return func(*results, string, string) (float64, string, bool) { return c, "", true }
}

func bestOf(r *results, sc, m string) (float64, string, bool) {
	for _, s := range r.scens {
		if mt, ok := r.metric(sc, m); ok && s.key == sc {
			p, v := r.bestPeer(s, mt)
			if p == nil {
				return 0, "", false
			}
			return v.med, p.name, true
		}
	}
	return 0, "", false
}

// metric finds a metric of a scenario of this run by their keys.
func (r *results) metric(sc, m string) (metric, bool) {
	for _, s := range r.scens {
		for _, mt := range s.metrics {
			if s.key == sc && mt.key == m {
				return mt, true
			}
		}
	}
	return metric{}, false
}

// targets lists each goal as met or not met, or "" when sluice was not
// measured.
func (rp *report) targets() string {
	r := rp.res
	var b strings.Builder
	for _, g := range goals {
		s := r.summary(sluiceSystem.key, g.scenario, g.metric)
		lim, from, ok := g.limit(r, g.scenario, g.metric)
		if !s.ok() || !ok {
			continue
		}
		met := s.med >= lim
		if g.atMost {
			met = s.med <= lim
		}
		verdict := "met"
		if !met {
			verdict = "**NOT met**"
		}
		if from != "" {
			from = " = " + from
		}
		f := "%.3g"
		if m, ok := r.metric(g.scenario, g.metric); ok {
			f = m.format
		}
		if fmt.Sprintf(f, s.med) == fmt.Sprintf(f, lim) {
			f = "%.4g" // show why 60 is not within 60
		}
		fmt.Fprintf(&b, "- %s: %s (sluice "+f+", limit "+f+"%s)\n", g.text, verdict, s.med, lim, from)
	}
	return b.String()
}
