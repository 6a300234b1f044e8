package main

import (
	"math"
	"slices"
)

// valKey names one measured quantity of one system.
type valKey struct{ system, scenario, metric string }

// results holds every value of a run, one slot per repetition (NaN where
// a run failed or was skipped), and the failures to footnote.
type results struct {
	reps     int
	systems  []*system
	scens    []*scenario
	vals     map[valKey][]float64
	failures []string
}

func newResults(reps int, systems []*system, scens []*scenario) *results {
	return &results{reps: reps, systems: systems, scens: scens, vals: map[valKey][]float64{}}
}

// add records one scenario run's metrics for repetition rep.
func (r *results) add(sys, sc string, rep int, m map[string]float64) {
	for k, v := range m {
		r.slot(valKey{sys, sc, k})[rep] = v
	}
}

func (r *results) slot(k valKey) []float64 {
	s, ok := r.vals[k]
	if !ok {
		s = make([]float64, r.reps)
		for i := range s {
			s[i] = math.NaN()
		}
		r.vals[k] = s
	}
	return s
}

// derive fills the metrics defined from others of the same repetition:
// minus direct's value (pairing repetitions so that drift between them
// cancels) or per proxy core-second.
func (r *results) derive() {
	for _, sc := range r.scens {
		for _, m := range sc.metrics {
			switch {
			case m.overDirect != "":
				r.deriveOverDirect(sc, m)
			case m.perCore != "":
				r.derivePerCore(sc, m)
			}
		}
	}
}

func (r *results) deriveOverDirect(sc *scenario, m metric) {
	base := r.vals[valKey{directSystem.key, sc.key, m.overDirect}]
	if base == nil {
		return
	}
	for _, sys := range r.systems {
		v := r.vals[valKey{sys.key, sc.key, m.overDirect}]
		if sys == directSystem || v == nil {
			continue
		}
		out := r.slot(valKey{sys.key, sc.key, m.key})
		for i := range out {
			out[i] = v[i] - base[i]
		}
	}
}

// derivePerCore divides m.perCore by the proxy's CPU in cores. A window
// with no CPU ticks at all (a run too short for the 10 ms clock) gets no
// value rather than an infinite one.
func (r *results) derivePerCore(sc *scenario, m metric) {
	for _, sys := range r.systems {
		v := r.vals[valKey{sys.key, sc.key, m.perCore}]
		cpu := r.vals[valKey{sys.key, sc.key, cpuMetric.key}]
		if v == nil || cpu == nil {
			continue
		}
		out := r.slot(valKey{sys.key, sc.key, m.key})
		for i := range out {
			if cpu[i] > 0 {
				out[i] = v[i] / (cpu[i] / 100)
			}
		}
	}
}

// summary is the median and spread of one quantity over repetitions.
type summary struct {
	med, lo, hi float64
	n           int // repetitions with a value
}

func (s summary) ok() bool { return s.n > 0 }

// summary of a system's metric; n is 0 when it was never measured.
func (r *results) summary(sys, sc, metric string) summary {
	return summarize(r.vals[valKey{sys, sc, metric}])
}

// summarize ignores NaNs; the median of an even count is the mean of the
// middle two.
func summarize(vals []float64) summary {
	var xs []float64
	for _, v := range vals {
		if !math.IsNaN(v) {
			xs = append(xs, v)
		}
	}
	if len(xs) == 0 {
		return summary{}
	}
	slices.Sort(xs)
	n := len(xs)
	med := xs[n/2]
	if n%2 == 0 {
		med = (xs[n/2-1] + xs[n/2]) / 2
	}
	return summary{med: med, lo: xs[0], hi: xs[n-1], n: n}
}

// peers are the systems sluice is compared with.
var peers = []*system{haproxySystem, nginxSystem}

// bestPeer returns the peer with the best median for a metric, or nil.
func (r *results) bestPeer(sc *scenario, m metric) (*system, summary) {
	var best *system
	var bs summary
	for _, p := range peers {
		if !slices.Contains(r.systems, p) {
			continue
		}
		s := r.summary(p.key, sc.key, m.key)
		if s.ok() && (best == nil || m.better(s.med, bs.med)) {
			best, bs = p, s
		}
	}
	return best, bs
}

// ratios returns sluice / best peer and sluice / direct for a metric, NaN
// where either side is missing or the divisor is zero.
func (r *results) ratios(sc *scenario, m metric) (vsPeer, vsDirect float64) {
	s := r.summary(sluiceSystem.key, sc.key, m.key)
	_, p := r.bestPeer(sc, m)
	d := r.summary(directSystem.key, sc.key, m.key)
	return ratio(s, p), ratio(s, d)
}

func ratio(a, b summary) float64 {
	if !a.ok() || !b.ok() || b.med == 0 {
		return math.NaN()
	}
	return a.med / b.med
}

// measured says whether any system has a value for the metric.
func (r *results) measured(sc *scenario, m metric) bool {
	for _, s := range r.systems {
		if r.summary(s.key, sc.key, m.key).ok() {
			return true
		}
	}
	return false
}
