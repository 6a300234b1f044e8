// Package maglev builds weighted Maglev consistent-hashing lookup tables
// (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
// Balancer", NSDI 2016) that come out identical on every machine and run.
//
//	t, err := maglev.New([]string{"10.0.0.1:80", "10.0.0.2:80"}, []int{1, 2}, maglev.DefaultSize)
//	i := t.Lookup(maglev.HashAddr(client, false)) // index into the ids passed to New
//	backend := backends[i]
package maglev

import (
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
)

const (
	// DefaultSize is the usual table size: prime, and more than 100 times
	// a pool of up to 655 backends, which keeps every share within 1%.
	DefaultSize = 65537
	// MaxSize bounds the table size so that a typo in a configuration
	// cannot allocate gigabytes; entries are 2 bytes, so this is 32 MiB.
	MaxSize = 1 << 24
	// MaxBackends is the most backends a table can hold: entries are
	// uint16 and 0xFFFF marks an empty slot while the table is filled.
	MaxBackends = 0xFFFF
	// MaxWeight bounds a backend's weight so that the fill's product
	// claimed*maxWeight stays far from overflow.
	MaxWeight = 1 << 16
)

// ErrTableSize is returned (wrapped) by New for a table size that is not a
// prime between the number of backends and MaxSize.
var ErrTableSize = errors.New("maglev: bad table size")

// empty marks a slot not yet claimed while New fills the table.
const empty = 0xFFFF

// Fixed salts for the two per-backend hashes. Changing either one changes
// every table, and so which backend each client reaches on a mixed-version
// fleet: TestGolden guards them.
const (
	offsetSalt = 0x6d61676c65762d6f // "maglev-o"
	skipSalt   = 0x6d61676c65762d73 // "maglev-s"
	addrSalt   = 0x6d61676c65762d61 // "maglev-a"
)

// Table is an immutable Maglev lookup table. It is safe for concurrent use.
type Table struct {
	// entries holds, for each slot, the index into the caller's ids of
	// the backend owning it. uint16 halves the table's cache footprint
	// against int32 (128 KiB at DefaultSize), at the cost of the
	// MaxBackends limit, far above any pool we expect.
	entries []uint16
}

// New builds a lookup table of size m over the backends identified by ids,
// each claiming slots in proportion to its weight. m must be prime and at
// least len(ids); ids must be distinct; weights[i] must be 1 to MaxWeight.
//
// The table depends only on the set of (id, weight) pairs, not on their
// order: New sorts by id internally, and Lookup returns the index into the
// caller's ids slice. Hashes use fixed seeds, so every machine and run
// builds the same table.
func New(ids []string, weights []int, m int) (*Table, error) {
	if err := check(ids, weights, m); err != nil {
		return nil, err
	}
	order := make([]int, len(ids))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(ids[a], ids[b]) })
	for k := 1; k < len(order); k++ {
		if ids[order[k]] == ids[order[k-1]] {
			return nil, fmt.Errorf("maglev: duplicate backend id %q", ids[order[k]])
		}
	}
	return &Table{entries: fill(ids, weights, order, m)}, nil
}

// check validates New's arguments, except for duplicate ids, which New
// finds once it has sorted them.
func check(ids []string, weights []int, m int) error {
	switch {
	case len(ids) == 0:
		return errors.New("maglev: no backends")
	case len(ids) != len(weights):
		return fmt.Errorf("maglev: %d ids but %d weights", len(ids), len(weights))
	case len(ids) > MaxBackends:
		return fmt.Errorf("maglev: %d backends, more than %d", len(ids), MaxBackends)
	}
	if err := CheckSize(len(ids), m); err != nil {
		return err
	}
	for i, w := range weights {
		if w < 1 || w > MaxWeight {
			return fmt.Errorf("maglev: backend %q: weight %d, want 1 to %d", ids[i], w, MaxWeight)
		}
	}
	return nil
}

// CheckSize returns the error New would give for a table of size m over n
// backends, or nil: m must be prime, at least n and at most MaxSize. A
// caller whose backend set changes at run time checks a new set with it
// before building anything.
func CheckSize(n, m int) error {
	switch {
	case m < n || m > MaxSize:
		return fmt.Errorf("%w: %d, want %d to %d", ErrTableSize, m, n, MaxSize)
	case !isPrime(m):
		// A prime size makes every skip coprime with m, so each
		// backend's permutation visits every slot (paper, section 3.4).
		return fmt.Errorf("%w: %d is not prime", ErrTableSize, m)
	}
	return nil
}

// fill runs the paper's population algorithm (Pseudocode 1), weighted:
// backend k (in id order) may claim its c+1-th slot from round
// c*maxW/weight+1 on, so the heaviest backend claims one slot per round and
// the others in proportion. Within a round backends take turns in id order.
// Every backend claims a slot in round 1, so each owns at least one.
//
// Rather than scanning every backend in every round, which costs
// len(ids) * rounds and rounds grow with the weight ratio, the backends wait
// in a heap keyed by (round, id order): the same sequence of claims in
// O(m log n).
func fill(ids []string, weights []int, order []int, m int) []uint16 {
	mm := uint64(m)
	maxW := 0
	for _, i := range order {
		maxW = max(maxW, weights[i])
	}
	q := make(claimQueue, len(order))
	for k, i := range order {
		q[k] = claimer{
			round:  1,
			k:      k,
			pos:    hashID(ids[i], offsetSalt) % mm,
			skip:   hashID(ids[i], skipSalt)%(mm-1) + 1,
			weight: int64(weights[i]),
		}
	}
	// q is already a heap: every key is (1, k) in ascending k.
	entries := make([]uint16, m)
	for s := range entries {
		entries[s] = empty
	}
	for range m {
		c := &q[0]
		for entries[c.pos] != empty {
			c.next(mm)
		}
		entries[c.pos] = uint16(order[c.k])
		c.next(mm)
		c.claimed++
		c.round = c.claimed*int64(maxW)/c.weight + 1
		q.down()
	}
	return entries
}

// claimer is a backend's state while fill runs: its place in its
// permutation (the next preferred slot and the step to the one after) and
// the round from which it may claim again.
type claimer struct {
	round, claimed, weight int64
	k                      int // position in id order, the tie-break
	pos, skip              uint64
}

// next steps to the following slot of c's permutation. pos and skip are
// below m, so a subtraction replaces a modulo, a division that would
// dominate fill: the walk takes about m*ln(m) steps as the table fills.
func (c *claimer) next(m uint64) {
	c.pos += c.skip
	if c.pos >= m {
		c.pos -= m
	}
}

// claimQueue is a min-heap of claimers by (round, k). fill only ever
// updates the root's key upwards, so down is the only operation needed.
type claimQueue []claimer

func (q claimQueue) less(a, b int) bool {
	if q[a].round != q[b].round {
		return q[a].round < q[b].round
	}
	return q[a].k < q[b].k
}

// down restores the heap after the root's key grew.
func (q claimQueue) down() {
	for i := 0; ; {
		least := i
		for _, c := range [2]int{2*i + 1, 2*i + 2} {
			if c < len(q) && q.less(c, least) {
				least = c
			}
		}
		if least == i {
			return
		}
		q[i], q[least] = q[least], q[i]
		i = least
	}
}

// Lookup returns the index, into the ids passed to New, of the backend
// owning the slot of key hash h. It does not allocate.
func (t *Table) Lookup(h uint64) int {
	return int(t.entries[t.slot(h)])
}

// Probe returns the index, into the ids passed to New, of the backend
// owning the slot k slots after the one of key hash h, wrapping around:
// Probe(h, 0) is Lookup(h). A caller that cannot use Lookup's backend walks
// on with k = 1, 2, ...; the slots it meets belong to every backend in
// proportion to weight, and each backend owns at least one. It does not
// allocate.
func (t *Table) Probe(h uint64, k int) int {
	return int(t.entries[(t.slot(h)+k)%len(t.entries)])
}

// slot maps h onto [0, m) by Lemire's multiply-shift, which is cheaper than
// a modulo by a variable and uses h's high bits, well mixed by HashAddr.
func (t *Table) slot(h uint64) int {
	hi, _ := bits.Mul64(h, uint64(len(t.entries)))
	return int(hi)
}

// Slot returns the slot of key hash h, 0 to m-1, whose backend Lookup
// returns: for explaining a choice, not for picking.
func (t *Table) Slot(h uint64) int { return t.slot(h) }

// Shares returns how many slots each backend owns, by index into the ids
// passed to New.
func (t *Table) Shares() []int {
	n := 0
	for _, e := range t.entries {
		n = max(n, int(e)+1)
	}
	shares := make([]int, n)
	for _, e := range t.entries {
		shares[e]++
	}
	return shares
}

// Size returns the number of slots, m.
func (t *Table) Size() int { return len(t.entries) }

// isPrime reports whether n is prime, by trial division: n is at most
// MaxSize, so at most 2048 odd divisors are tried.
func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	if n%2 == 0 {
		return n == 2
	}
	for d := 3; d*d <= n; d += 2 {
		if n%d == 0 {
			return false
		}
	}
	return true
}
