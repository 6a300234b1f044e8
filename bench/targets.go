package main

import (
	"fmt"
	"strings"
)

// target checks are issue 3's goals for sluice (and issue 5's for UDP), evaluated on the medians
// of this run. Each compares sluice's value with a threshold derived
// from another system's value (or a constant).
type goal struct {
	text     string
	scenario string
	metric   string
	// limit returns the threshold and what it was derived from; ok is
	// false when that system was not measured.
	limit  func(r *results, sc, m string) (v float64, from string, ok bool)
	atMost bool // sluice must be <= limit (else >=)
}

var goals = []goal{
	{"TCP throughput, 1 stream, at least 1.2x HAProxy", "tcp1", "gbps", times(haproxySystem, 1.2), false},
	{"TCP throughput, 4 streams, at least 1.2x HAProxy", "tcp4", "gbps", times(haproxySystem, 1.2), false},
	{"TCP throughput, 1 stream, at least 0.85x direct", "tcp1", "gbps", times(directSystem, 0.85), false},
	{"TCP throughput, 4 streams, at least 0.85x direct", "tcp4", "gbps", times(directSystem, 0.85), false},
	{"TCP throughput, 1 stream, at most 60% of one core", "tcp1", "cpu", constant(60), true},
	{"TCP throughput, 4 streams, at most 60% of one core", "tcp4", "cpu", constant(60), true},
	{"keep-alive request rate at least the best peer's", "keepalive", "rps", bestOf, false},
	{"new connections per second at least the best peer's", "newconn", "cps", bestOf, false},
	{"p99 latency added over direct at most the best peer's", "latency", "p99_added", bestOf, true},
	{"2 fds per idle connection", "idle", "fds", constant(2.05), true},
	{"UDP datagrams per second at full rate at least 2x nginx's", "udp", "dps", times(nginxSystem, 2), false},
	{"UDP loss at full rate at most nginx's", "udp", "loss", times(nginxSystem, 1), true},
	{"machine memory per idle connection (added over direct) at most HAProxy's", "idle", "machine_added_kb", times(haproxySystem, 1), true},
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
