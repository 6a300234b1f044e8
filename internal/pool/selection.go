package pool

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"sluice/internal/maglev"
)

// selection is the immutable state Pick reads: the backends it may return
// and what the pool's algorithm precomputes over them. Every change of
// state replaces it whole, so a Pick sees either the old set or the new
// one, never a mix.
type selection struct {
	// cfg is the pool's settings the selection was built under.
	cfg *settings
	// up holds the backends that are up, in the order given to New: the
	// non-backup ones, or the backups if none of those is up.
	up      []*Backend
	backups bool  // up is made of backups
	w       []int // weight of each of up, scaled during slow starts
	// seq holds indices into up, each as many times as its weight
	// divided by the weights' gcd: in smooth order for round robin, in
	// any order for random, which draws uniform indices into it.
	seq []int32
	// table maps hashed clients to indices into up, for Maglev.
	table *maglev.Table
	// less holds, for Maglev, the selection without each backend of up
	// (same index), built the first time a connect to that backend fails;
	// in those, less holds the selections without a second one. A retry
	// goes where the table rebuilt without the failed backends sends the
	// client: where every host sends it once the checks mark them down.
	// The next slot of this table would not do: it belongs to another
	// backend than the rebuilt table's choice for about half the clients
	// (nine in ten with ten backends), which then move twice, and
	// differently on each host (issue 8). Tables are keyed by the set of
	// backends left out, and at most two are: k failing backends build at
	// most k + k(k-1)/2 tables, not one per ordered sequence of failures.
	// A selection without two backends has no less.
	less []lazySelection
	// none says why up is empty, for the log of refused connections.
	none string
}

// build computes the selection for the backends' current states and the
// pool's settings. The caller holds p.mu (or owns p, in New). It cannot
// fail: Options.check has checked the Maglev table size against every
// backend, and the selection holds at most those.
func (p *Pool) build() *selection {
	s := &selection{cfg: p.cfg}
	unchecked := false // a non-backup backend awaits its first check
	for _, b := range p.backends {
		switch {
		case b.Backup():
		case b.st.state == StateUp:
			s.up = append(s.up, b)
		case p.cfg.checked && !b.st.known && b.st.admin == Enabled && b.st.initial:
			// One added by Update to a serving pool does not hold
			// back backups that are standing in already.
			unchecked = true
		}
	}
	// Backups stand in only for backends known to be down: at start, one
	// checked first must not take traffic the others will be given a
	// moment later.
	if len(s.up) == 0 && !unchecked {
		for _, b := range p.backends {
			if b.st.state == StateUp {
				s.up = append(s.up, b)
			}
		}
		s.backups = len(s.up) > 0
	}
	if len(s.up) == 0 {
		s.none = p.noneReason()
		return s
	}
	s.w = rampedWeights(s.up)
	switch p.cfg.balance {
	case RoundRobin:
		s.seq = smoothSequence(s.w)
	case Random:
		s.seq = weightedSequence(s.w)
	case Maglev:
		ids := make([]string, len(s.up))
		for i, b := range s.up {
			ids[i] = b.id
		}
		t, err := maglev.New(ids, s.w, p.cfg.table)
		if err != nil {
			panic("pool: building " + p.name + ": " + err.Error())
		}
		s.table = t
		s.less = make([]lazySelection, len(s.up))
	}
	return s
}

// lazySelection is a selection built on first use, once.
type lazySelection struct {
	once sync.Once
	s    *selection
}

// without returns the Maglev selection of s without s.up[i], and without
// s.up[j] too unless j is negative; i and j differ, in either order. s is
// the pool's full selection. The first call for a set builds its table
// (milliseconds, as a change of state would); retries that come meanwhile
// wait for it rather than build it again: a dying backend fails every
// connect in flight to it at once, and each build would cost as long as
// the wait and a table's memory besides. Later calls only load a flag.
// Picks without a retry never come here. The tables live as long as s,
// until the next change of state, and only for the sets that failed.
func (s *selection) without(i, j int) *selection {
	if j >= 0 && j < i {
		i, j = j, i // one table per set, whatever the order of failures
	}
	l := &s.less[i]
	l.once.Do(func() { l.s = s.remove(i, true) })
	if j < 0 {
		return l.s
	}
	t := l.s
	// t.up is s.up without s.up[i], which came before s.up[j].
	l = &t.less[j-1]
	l.once.Do(func() { l.s = t.remove(j-1, false) })
	return l.s
}

// remove builds the Maglev selection of s without s.up[i], with room for
// the selections without one more backend if more is set. The weights are
// s's (scaled alike during a slow start, which leaves the table unchanged),
// so the table is the one build would make once that backend is down.
func (s *selection) remove(i int, more bool) *selection {
	t := &selection{
		cfg:     s.cfg,
		up:      slices.Delete(slices.Clone(s.up), i, i+1),
		backups: s.backups,
		w:       slices.Delete(slices.Clone(s.w), i, i+1),
	}
	ids := make([]string, len(t.up))
	for k, b := range t.up {
		ids[k] = b.id
	}
	table, err := maglev.New(ids, t.w, s.table.Size())
	if err != nil {
		// s's table holds more backends at the same size, and Pick
		// never removes the last one.
		panic("pool: maglev table without " + s.up[i].id + ": " + err.Error())
	}
	t.table = table
	if more {
		t.less = make([]lazySelection, len(t.up))
	}
	return t
}

// rampedWeights returns the weights of bs. While any of them is in slow
// start, every weight is scaled by slowStartSteps and a ramping one by its
// step instead, so that weights stay integers.
func rampedWeights(bs []*Backend) []int {
	w := make([]int, len(bs))
	ramping := false
	for i, b := range bs {
		w[i] = b.Weight()
		ramping = ramping || b.st.rampStep > 0 && b.st.rampStep < slowStartSteps
	}
	if !ramping {
		return w
	}
	for i, b := range bs {
		if k := b.st.rampStep; k > 0 && k < slowStartSteps {
			w[i] *= k
		} else {
			w[i] *= slowStartSteps
		}
	}
	return w
}

// noneReason describes every backend's state, for when none is up.
func (p *Pool) noneReason() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "pool %q has no backend up:", p.name)
	for i, b := range p.backends {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, " %s %s", b.id, b.st.state)
		if b.Backup() {
			sb.WriteString(" backup")
		}
		switch {
		case b.st.state != StateDown:
		case b.st.ejected:
			fmt.Fprintf(&sb, " (ejected after connection failures, until %s)", b.st.ejectedUntil(p.cfg.checked))
		case b.st.reason != "":
			fmt.Fprintf(&sb, " (%s)", b.st.reason)
		case !b.st.known:
			sb.WriteString(" (not checked yet)")
		}
	}
	return sb.String()
}

// smoothSequence returns one cycle of nginx's smooth weighted round robin
// over weights (ngx_http_upstream_get_peer), as indices: each step adds
// every backend's weight to its current value, picks the largest (the
// first one on a tie) and subtracts the total from it. Weights 5, 1, 1 give
// a a b a c a a: the light backends are spread out rather than sent in
// bursts.
//
// The weights are divided by their gcd first; scaling every weight by g
// scales every current value by g, so the full cycle is just this one g
// times over. Building costs len(weights) times the cycle's length, at
// most MaxWeight*len^2 (ten times that during a slow start), paid on a
// change of state only.
func smoothSequence(weights []int) []int32 {
	weights, total := reduced(weights)
	current := make([]int, len(weights))
	seq := make([]int32, 0, total)
	for range total {
		best := 0
		for i, w := range weights {
			current[i] += w
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		seq = append(seq, int32(best))
	}
	return seq
}

// weightedSequence returns each index of weights as many times as its
// reduced weight, so that a uniform index into it draws in proportion to
// weight.
func weightedSequence(weights []int) []int32 {
	weights, total := reduced(weights)
	seq := make([]int32, 0, total)
	for i, w := range weights {
		for range w {
			seq = append(seq, int32(i))
		}
	}
	return seq
}

// reduced returns weights divided by their gcd, and their sum.
func reduced(weights []int) ([]int, int) {
	g := 0
	for _, w := range weights {
		g = gcd(g, w)
	}
	out := make([]int, len(weights))
	total := 0
	for i, w := range weights {
		out[i] = w / g
		total += out[i]
	}
	return out, total
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
