package access

import (
	"errors"
	"hash/maphash"
	"math/rand/v2"
	"net/netip"
	"time"
)

// ErrClientLimit is wrapped by every refusal of Acquire and Allow; the
// error's text says which limit.
var ErrClientLimit = errors.New("access: client over its limit")

// limitError is a refusal: a fixed message matching ErrClientLimit, so that
// refusing a flood allocates nothing.
type limitError string

func (e limitError) Error() string        { return "access: " + string(e) }
func (e limitError) Is(target error) bool { return target == ErrClientLimit }

var (
	errTooMany   error = limitError("client at its limit of concurrent connections")
	errTooFast   error = limitError("client over its rate of new connections")
	errTableFull error = limitError("client table full of clients with live connections")
)

// Limits are the per-client limits of one listener. The zero value limits
// nothing.
type Limits struct {
	// MaxConns caps each client's concurrent connections; zero means no
	// cap.
	MaxConns int
	// Rate caps each client's new connections (or new UDP flows, or HTTP
	// requests).
	Rate Rate
	// Burst is how many events a client may make at once, ahead of Rate;
	// zero means Rate.N.
	Burst int
	// Clients bounds how many clients are tracked at once; zero means
	// DefaultClients. A client with live connections is never dropped
	// from the table; when its part of the table (one of 64 shards) is
	// full of those, new clients there are refused. A client with none
	// is dropped once its rate allowance has refilled (by later calls,
	// a few entries each), or sooner, least recently seen first, when
	// room is needed: only a flood of more sources than the table holds
	// makes the limiter forget a client's rate.
	Clients int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultClients is Limits.Clients' default: about 6 MB of table at most.
const DefaultClients = 1 << 16

// shards spreads clients over independently locked tables, so concurrent
// connections from different clients rarely meet on a lock, and a single
// lock is held only for a map lookup and a few stores.
const shards = 64

// Limiter enforces Limits per client address. Methods are safe for
// concurrent use. A nil *Limiter limits nothing.
type Limiter struct {
	maxConns  int32
	interval  int64 // ns between events at the steady rate; 0: no rate
	tolerance int64 // ns a client may run ahead of the steady rate
	now       func() time.Time
	epoch     time.Time
	seed      maphash.Seed
	shard     [shards]shard
}

// NewLimiter returns a Limiter for l, or nil if l limits nothing.
func NewLimiter(l Limits) *Limiter {
	if l.MaxConns <= 0 && l.Rate.IsZero() {
		return nil
	}
	clients := l.Clients
	if clients <= 0 {
		clients = DefaultClients
	}
	lim := &Limiter{maxConns: int32(min(max(l.MaxConns, 0), 1<<30)), now: l.Now, seed: maphash.MakeSeed()}
	if lim.now == nil {
		lim.now = time.Now
	}
	lim.epoch = lim.now()
	if !l.Rate.IsZero() {
		// GCRA (the generic cell rate algorithm, a token bucket kept as
		// one timestamp): each event moves a client's theoretical
		// arrival time on by interval; an event is allowed while that
		// time is at most tolerance ahead of now. The burst is N.
		lim.interval = int64(l.Rate.Per) / int64(l.Rate.N)
		burst := l.Rate.N
		if l.Burst > 0 {
			burst = l.Burst
		}
		lim.tolerance = lim.interval * int64(burst-1)
	}
	per := (clients + shards - 1) / shards
	for i := range lim.shard {
		lim.shard[i].init(per)
	}
	return lim
}

// key is an address in the form the table compares: IPv4 and IPv4-mapped
// alike, zone dropped. A fixed array keeps pointers out of the maps.
type key [16]byte

func keyOf(a netip.Addr) key { return a.Unmap().As16() }

func (l *Limiter) shardOf(k *key) *shard {
	return &l.shard[maphash.Bytes(l.seed, k[:])%shards]
}

func (l *Limiter) clock() int64 { return int64(l.now().Sub(l.epoch)) }

// sweepOther lets a call also expire idle entries of a shard picked at
// random, unless it is busy: a shard nobody's traffic lands on empties all
// the same, with no goroutine to own and stop. math/rand/v2's global
// generator is per thread, so picking shares no cache line.
func (l *Limiter) sweepOther(now int64) {
	o := &l.shard[rand.Uint32()%shards]
	if o.mu.TryLock() {
		o.sweep(now)
		o.mu.Unlock()
	}
}

// Acquire counts a new connection from addr, or refuses it with an error
// wrapping ErrClientLimit. Every successful Acquire must be followed by one
// Release for the same address.
func (l *Limiter) Acquire(addr netip.Addr) error {
	if l == nil {
		return nil
	}
	k, now := keyOf(addr), l.clock()
	l.sweepOther(now)
	return l.shardOf(&k).acquire(l, &k, now, true)
}

// Release ends a connection counted by Acquire.
func (l *Limiter) Release(addr netip.Addr) {
	if l == nil {
		return
	}
	k := keyOf(addr)
	l.shardOf(&k).release(&k, l.clock())
}

// Allow counts an event that holds nothing (a new UDP flow) against addr's
// rate, or refuses it with an error wrapping ErrClientLimit. MaxConns does
// not apply.
func (l *Limiter) Allow(addr netip.Addr) error {
	if l == nil {
		return nil
	}
	if l.interval == 0 {
		return nil
	}
	k, now := keyOf(addr), l.clock()
	l.sweepOther(now)
	return l.shardOf(&k).acquire(l, &k, now, false)
}

// RetryAfter is how long a client refused by Allow waits at most before
// its next event is allowed: one interval of the steady rate, since a
// refusal comes at most that far ahead of the allowance. Zero without a
// rate.
func (l *Limiter) RetryAfter() time.Duration {
	if l == nil {
		return 0
	}
	return time.Duration(l.interval)
}

// Len returns how many clients the table holds now.
func (l *Limiter) Len() int {
	if l == nil {
		return 0
	}
	n := 0
	for i := range l.shard {
		s := &l.shard[i]
		s.mu.Lock()
		n += len(s.index)
		s.mu.Unlock()
	}
	return n
}

// Cap returns the most clients the table holds.
func (l *Limiter) Cap() int {
	if l == nil {
		return 0
	}
	return shards * l.shard[0].cap
}
