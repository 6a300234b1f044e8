package pool

import (
	"sluice/internal/maglev"
)

// selection is the immutable state Pick reads: the backends that are up
// and what the pool's algorithm precomputes over them. SetUp replaces it
// whole, so a Pick sees either the old set or the new one, never a mix.
type selection struct {
	up []*Backend // in the order given to New
	// seq holds the up backends, each as many times as its weight
	// divided by the weights' gcd: in smooth order for round robin, in
	// any order for random, which draws uniform indices into it.
	seq []*Backend
	// table maps hashed clients to indices into up, for Maglev.
	table *maglev.Table
}

// build computes the selection for the backends that are up now.
func (p *Pool) build() (*selection, error) {
	s := &selection{}
	for _, b := range p.backends {
		if b.up.Load() {
			s.up = append(s.up, b)
		}
	}
	if len(s.up) == 0 {
		return s, nil
	}
	switch p.balance {
	case RoundRobin:
		s.seq = smoothSequence(s.up)
	case Random:
		s.seq = weightedSequence(s.up)
	case Maglev:
		ids, weights := make([]string, len(s.up)), make([]int, len(s.up))
		for i, b := range s.up {
			ids[i], weights[i] = b.id, b.Weight
		}
		t, err := maglev.New(ids, weights, p.table)
		if err != nil {
			return nil, err
		}
		s.table = t
	}
	return s, nil
}

// smoothSequence returns one cycle of nginx's smooth weighted round robin
// over bs (ngx_http_upstream_get_peer): each step adds every backend's
// weight to its current value, picks the largest (the first one on a tie)
// and subtracts the total from it. Weights 5, 1, 1 give a a b a c a a: the
// light backends are spread out rather than sent in bursts.
//
// The weights are divided by their gcd first; scaling every weight by g
// scales every current value by g, so the full cycle is just this one g
// times over. Building costs len(bs) times the cycle's length, at most
// MaxWeight*len(bs)^2, paid on SetUp only.
func smoothSequence(bs []*Backend) []*Backend {
	weights, total := reducedWeights(bs)
	current := make([]int, len(bs))
	seq := make([]*Backend, 0, total)
	for range total {
		best := 0
		for i, w := range weights {
			current[i] += w
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		seq = append(seq, bs[best])
	}
	return seq
}

// weightedSequence returns each backend of bs as many times as its reduced
// weight, so that a uniform index into it draws in proportion to weight.
func weightedSequence(bs []*Backend) []*Backend {
	weights, total := reducedWeights(bs)
	seq := make([]*Backend, 0, total)
	for i, w := range weights {
		for range w {
			seq = append(seq, bs[i])
		}
	}
	return seq
}

// reducedWeights returns bs's weights divided by their gcd, and their sum.
func reducedWeights(bs []*Backend) ([]int, int) {
	g := 0
	for _, b := range bs {
		g = gcd(g, b.Weight)
	}
	weights := make([]int, len(bs))
	total := 0
	for i, b := range bs {
		weights[i] = b.Weight / g
		total += weights[i]
	}
	return weights, total
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
