package pool

import (
	"net/netip"

	"sluice/internal/maglev"
)

// Explanation says which backend Pick would give a client now, and what
// the choice was made among. It is a snapshot: a change of state a moment
// later may change the answer.
type Explanation struct {
	// Balance and HashKey are the pool's algorithm and, for Maglev, what
	// it hashes.
	Balance Balance
	HashKey HashKey
	// Backend is the backend Pick would return for the client's first
	// connect; nil when no backend is up. For round robin it is the next
	// one in the sequence, for least_conn the least loaded one now (a tie
	// is broken at random), for random one of two random draws: those
	// depend on the order of connections or their loads (Deterministic
	// is false).
	Backend *Backend
	// Deterministic says that Backend depends only on the client and the
	// backends' states (Maglev).
	Deterministic bool
	// Candidates are the backends picked among (those up, or the
	// backups while no other is up) and Weights their weights as Pick
	// sees them (scaled during a slow start).
	Candidates []*Backend
	Weights    []int
	// Backups says the candidates are the pool's backups.
	Backups bool
	// Hash, Slot and TableSize are Maglev's: the client's hash, its slot
	// and the table's size. Slot is -1 for other algorithms.
	Hash      uint64
	Slot      int
	TableSize int
	// SlotShare is, for Maglev, the number of slots each candidate owns.
	SlotShare []int
	// Ties is, for least_conn, how many candidates share the least load
	// per unit of weight: Pick takes one of them at random.
	Ties int
	// None says why no backend is up; "" while one is.
	None string
}

// Explain says which backend Pick(client, nil) would return now, and why.
// It reads the same snapshot Pick does; it is for operators, not for the
// data path (it allocates, and counts Maglev slots).
func (p *Pool) Explain(client netip.AddrPort) Explanation {
	s := p.sel.Load()
	e := Explanation{Balance: s.cfg.balance, HashKey: s.cfg.hashKey, Slot: -1, None: s.none, Backups: s.backups}
	if len(s.up) == 0 {
		return e
	}
	e.Candidates = append([]*Backend(nil), s.up...)
	e.Weights = append([]int(nil), s.w...)
	switch s.cfg.balance {
	case Maglev:
		e.Deterministic = true
		e.Hash = maglev.HashAddr(client, s.cfg.hashKey == ClientIPPort)
		e.Slot, e.TableSize = s.table.Slot(e.Hash), s.table.Size()
		e.Backend = s.up[s.table.Lookup(e.Hash)]
		e.SlotShare = s.table.Shares()
	case RoundRobin:
		// The entry the next Pick takes, without taking it.
		e.Backend = s.up[s.seq[p.next.Load()%uint64(len(s.seq))]]
	case LeastConn:
		best, _, ties := s.minLoad(nil)
		e.Backend, e.Ties = s.up[best], ties
	default:
		e.Backend = s.random(nil)
	}
	return e
}
