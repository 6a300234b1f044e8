package access

import "sync"

// shard is one lock's part of a Limiter's table: a map from address to a
// slot of entries, a free list of slots, and the idle clients (no live
// connection) in a list, least recently used first. Memory is bounded by
// cap slots; the map never holds more keys than that.
type shard struct {
	mu         sync.Mutex
	index      map[key]int32
	entries    []entry
	free       int32 // first free slot, linked by next; -1: none
	head, tail int32 // idle list; -1: empty
	cap        int
	_          [64]byte // keeps the next shard's lock off this cache line
}

// entry is one client. An entry with no live connection is on the idle
// list; one whose rate allowance has also refilled (tat <= now) carries
// no state at all and is dropped.
type entry struct {
	k          key
	tat        int64 // GCRA theoretical arrival time, ns after the epoch
	conns      int32
	prev, next int32
}

const none = -1

func (s *shard) init(cap int) {
	s.cap = cap
	s.index = make(map[key]int32)
	s.free, s.head, s.tail = none, none, none
}

// sweepPerCall bounds the expired idle entries one call drops, so that no
// caller pays for a backlog; every call drops some, so idle entries do not
// outlive the traffic that would need their slots.
const sweepPerCall = 2

// sweep drops up to sweepPerCall idle entries whose rate allowance has
// refilled. The idle list is in order of last use, and so nearly in order
// of tat (a client's tat is its last use plus at most the burst's span):
// an expired entry behind an unexpired one waits for a later sweep, or is
// the first taken when room is needed.
func (s *shard) sweep(now int64) {
	for range sweepPerCall {
		if s.head == none || s.entries[s.head].tat > now {
			return
		}
		s.drop(s.head)
	}
}

func (s *shard) acquire(l *Limiter, k *key, now int64, count bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	i, ok := s.index[*k]
	if !ok {
		if i = s.alloc(); i == none {
			return errTableFull
		}
		s.entries[i] = entry{k: *k, prev: none, next: none}
		s.index[*k] = i
	}
	e := &s.entries[i]
	if count && l.maxConns > 0 && e.conns >= l.maxConns {
		return errTooMany
	}
	if l.interval > 0 {
		tat := max(e.tat, now)
		if tat-now > l.tolerance {
			return errTooFast
		}
		e.tat = tat + l.interval
	}
	// A new entry is on no list; an existing one with no connection is
	// on the idle list.
	if ok && e.conns == 0 {
		s.unlink(i)
	}
	if count {
		e.conns++
	} else {
		s.push(i)
	}
	return nil
}

func (s *shard) release(k *key, now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.index[*k]
	if !ok || s.entries[i].conns == 0 {
		return // not acquired: a caller's bug, but not one to crash on
	}
	e := &s.entries[i]
	if e.conns--; e.conns > 0 {
		return
	}
	if e.tat <= now {
		delete(s.index, e.k)
		s.pushFree(i)
		return
	}
	s.push(i)
}

// alloc returns a slot for a new client: a free one, a new one while under
// cap, or the least recently used idle client's, whose rate state is then
// forgotten (only under a flood of more clients than the table holds).
func (s *shard) alloc() int32 {
	switch {
	case s.free != none:
		i := s.free
		s.free = s.entries[i].next
		return i
	case len(s.entries) < s.cap:
		s.entries = append(s.entries, entry{})
		return int32(len(s.entries) - 1)
	case s.head != none:
		i := s.head
		s.unlink(i)
		delete(s.index, s.entries[i].k)
		return i
	}
	return none
}

// drop removes idle entry i from the table.
func (s *shard) drop(i int32) {
	s.unlink(i)
	delete(s.index, s.entries[i].k)
	s.pushFree(i)
}

func (s *shard) pushFree(i int32) {
	s.entries[i].next = s.free
	s.free = i
}

// push appends i to the idle list as its most recently used entry.
func (s *shard) push(i int32) {
	e := &s.entries[i]
	e.prev, e.next = s.tail, none
	if s.tail == none {
		s.head = i
	} else {
		s.entries[s.tail].next = i
	}
	s.tail = i
}

// unlink takes i off the idle list.
func (s *shard) unlink(i int32) {
	e := &s.entries[i]
	if e.prev == none {
		s.head = e.next
	} else {
		s.entries[e.prev].next = e.next
	}
	if e.next == none {
		s.tail = e.prev
	} else {
		s.entries[e.next].prev = e.prev
	}
	e.prev, e.next = none, none
}
