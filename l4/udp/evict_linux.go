package udp

import "log/slog"

// A full session table makes room for a new flow as conntrack's early drop
// does: it ends the least recently active session, if that one has been
// idle for the floor (Server.EvictIdle). Each loop keeps its sessions in an
// idle list, least recently active first, so its candidate is the list's
// front and finding it costs nothing, however large the table.
//
// Only a loop may end its own sessions. A loop whose table share is empty
// or busy (the first loop to read a flood can take every place before the
// others run) asks the others for a place: one of them evicts its own
// candidate when it next wakes, and lends the place, still counted in
// Server.live, to the next new flow that finds the table full, on any
// loop. The client that found no room gets it when it sends again.

// reserve counts a new session against MaxSessions and reports whether
// there is room for it, making room if the table is full.
func (l *loop) reserve() bool {
	s := l.s
	if s.live.Add(1) <= s.maxSessions() {
		return true
	}
	// A lent place is already counted in live.
	for n := s.lent.Load(); n > 0; n = s.lent.Load() {
		if s.lent.CompareAndSwap(n, n-1) {
			s.live.Add(-1)
			return true
		}
	}
	if v := l.candidate(); v != nil {
		l.evict(v) // gives back its place, which is now ours
		return true
	}
	s.live.Add(-1)
	if s.evictIdle() >= 0 && s.wants.CompareAndSwap(0, 1) {
		s.wakeOthers(l)
	}
	return false
}

// candidate returns the session to evict for a new flow: the least
// recently active one, if it has been idle for the floor. A session
// touched in this wake-up has last == l.now, so a positive floor never
// picks one that the current batch still points at.
func (l *loop) candidate() *session {
	v, floor := l.idle.front, l.s.evictIdle()
	if v == nil || floor < 0 || l.now-v.last < floor {
		return nil
	}
	return v
}

// evict ends v to make room for a new flow, counts it and warns.
func (l *loop) evict(v *session) {
	l.end(v, EndEvicted, nil)
	l.stats.evicted.Add(1)
	l.evictions.warn(l, "udp session cap reached, evicting idle sessions for new flows",
		slog.Int64("max_sessions", l.s.maxSessions()))
}

// lend answers another loop's request for a place, if this loop has a
// session to evict. The loop calls it on every wake-up while a request is
// open, and wait wakes it when its candidate reaches the floor.
func (l *loop) lend() {
	s := l.s
	v := l.candidate()
	if v == nil || !s.wants.CompareAndSwap(1, 0) {
		return
	}
	// Count the place before ending v gives it back, so that no other
	// loop's new flow takes it in between.
	s.live.Add(1)
	l.evict(v)
	s.lent.Add(1)
}
