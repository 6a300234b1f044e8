package udp

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"sluice/internal/pool"
)

// roundBatches is how many batches one socket may move per round of the
// loop before the others get their turn. More than one saves epoll_wait
// calls under load, and lets replies keep up with a flow blasting at full
// rate, which a backend socket's receive buffer (about 270 small
// datagrams by default) could not absorb for long.
const roundBatches = 4

// readClients reads batches from the listening socket until it is empty
// or the round's share is used, and sends each datagram on through its
// flow's session, opening sessions for new flows.
func (l *loop) readClients() {
	for range roundBatches {
		l.in.forReceive(0, batchSize, true, l.pktinfo)
		n, errno := recvmmsg(l.fd, l.in.hs)
		if errno != 0 {
			// EAGAIN: the queue is empty. Other errors on an
			// unconnected socket are ICMP reports about a reply we
			// sent; they concern no flow here.
			return
		}
		l.stats.fromClients.Add(uint64(n))
		l.assign(n)
		l.forwardAll(n)
		if n < batchSize {
			return
		}
	}
}

// assign finds (or opens) the session of each of the n datagrams read,
// recording it in l.dest; nil drops the datagram.
func (l *loop) assign(n int) {
	var cur *session
	for i := range n {
		k, ifindex, ok := parseKey(l.in, i, l.pktinfo)
		l.off[i] = 0
		if ok && l.cf.Preamble != nil {
			ok = l.strip(&k, i)
		}
		switch {
		case !ok:
			cur = nil
		// Datagrams of a flow often come in a row: skip the map.
		case cur == nil || k != cur.key || l.gone(cur):
			cur = l.session(k, ifindex, i)
		}
		l.dest[i] = cur
		if cur != nil {
			cur.dgIn++
			cur.in += int64(l.in.hs[i].n) - int64(l.off[i])
			l.idle.touch(cur, l.now)
		}
	}
}

// forwardAll sends the n datagrams to their sessions' backends: one
// sendmmsg per session, its datagrams in the order they came.
func (l *loop) forwardAll(n int) {
	for i := range n {
		s := l.dest[i]
		if s == nil {
			continue
		}
		k, at := 0, 0
		for j := i; j < n; j++ {
			if l.dest[j] == s {
				at = l.fwd.point(k, at, s.pre, l.in, j, l.off[j])
				l.dest[j] = nil
				k++
			}
		}
		if s.fd < 0 {
			// Ended later in the batch: its backend went down.
			l.stats.sendFailed.Add(uint64(k))
			continue
		}
		l.forward(s, k)
	}
}

// session returns the live session of flow k, replacing it if its backend
// is down, or opens one for datagram i. It returns nil if the datagram is
// to be dropped.
func (l *loop) session(k flowKey, ifindex uint32, i int) *session {
	s := l.flows[k]
	if s != nil && !l.gone(s) {
		return s
	}
	if s != nil {
		l.end(s, EndBackendDown, nil)
	}
	switch {
	case l.draining:
		l.stats.droppedDraining.Add(1)
		return nil
	case !l.admit(k, i):
		return nil
	case !l.reserve():
		l.stats.droppedCap.Add(1)
		l.drops.warn(l, "udp session cap reached, dropping new flows",
			slog.Int64("max_sessions", l.s.maxSessions()))
		return nil
	}
	s, err := l.open(k, ifindex, i)
	if s == nil {
		l.s.live.Add(-1)
		if err != nil {
			l.stats.droppedSocket.Add(1)
			l.drops.warn(l, "udp session not opened, dropping its datagram", slog.String("error", err.Error()))
		} else {
			l.stats.droppedNoBackend.Add(1)
		}
	}
	return s
}

// gone reports whether s's flow must leave its backend because the backend
// is down (failing its health checks, or ejected). A draining backend, or
// one in maintenance, keeps the flows it has, as it keeps its connections.
// Telling those apart takes the pool's lock, so it is done only while the
// backend is not up, and then at most once a second per session.
func (l *loop) gone(s *session) bool {
	if s.be.Up() || l.now < s.recheck {
		return false
	}
	if s.be.State() == pool.StateDown {
		return true
	}
	s.recheck = l.now + time.Second
	return false
}

// open picks a backend for flow k and opens the session's socket to it.
// It returns nil, nil if the pool has no backend up.
func (l *loop) open(k flowKey, ifindex uint32, i int) (*session, error) {
	be := l.cf.Pool.Pick(k.clientAddr(), nil)
	if be == nil {
		return nil, nil
	}
	fd, err := dialBackend(be.Addr)
	if err != nil {
		if !localFailure(err) {
			// No route to it, say: the backend's fault, as a
			// failed TCP connect is.
			be.ReportFailure(err)
		}
		return nil, err
	}
	s := &session{key: k, be: be, fd: fd, start: l.now,
		name: l.in.names[i], namelen: l.in.hs[i].hdr.Namelen}
	if bp := l.cf.BackendPreamble; bp != nil {
		c := l.client(k, i)
		s.pre = bp.AppendBackendPreamble(nil, &c)
	}
	s.setSource(l.family, k.local, ifindex)
	if err := l.place(s); err != nil {
		unix.Close(fd)
		return nil, err
	}
	l.idle.pushBack(s)
	be.Acquire()
	s.bc = l.s.Counters.opened(be.Addr)
	return s, nil
}

// place gives s a slot and watches its socket, and makes it its flow's
// session; the caller puts it in the idle list.
func (l *loop) place(s *session) error {
	if len(l.free) > 0 {
		s.slot, l.free = l.free[len(l.free)-1], l.free[:len(l.free)-1]
	} else {
		s.slot = int32(len(l.slots))
		l.slots, l.gens = append(l.slots, nil), append(l.gens, 0)
	}
	l.gens[s.slot]++
	s.gen = l.gens[s.slot]
	if err := l.watch(s.fd, s.slot, s.gen); err != nil {
		l.free = append(l.free, s.slot)
		return err
	}
	l.slots[s.slot] = s
	l.flows[s.key] = s
	return nil
}

// forward sends the first n headers of l.fwd to s's backend: runs that
// segmentation offload can carry as one message each (see gsoRun), the
// rest one by one, all in one sendmmsg.
func (l *loop) forward(s *session, n int) {
	k := l.coalesce(s, l.fwd.hs[:n], nil, 0, 0)
	for from := 0; from < k; {
		sent, errno := sendmmsg(s.fd, l.send[from:k])
		if errno == unix.EINTR {
			continue
		}
		if errno == 0 {
			l.stats.toBackends.Add(l.segments(from, from+sent))
			from += sent
			continue
		}
		if first, segs := l.sendFrom[from], l.sendSegs[from]; segs > 1 && gsoRefused(errno) {
			s.noGSO = true
			if !l.forwardEach(s, first, first+segs) {
				return
			}
			from++
			continue
		}
		l.stats.sendFailed.Add(l.segments(from, k))
		l.sendError(s, errno)
		return
	}
}

// forwardEach sends headers from..n of l.fwd to s's backend, one datagram
// each. It reports false if the datagrams could not go.
func (l *loop) forwardEach(s *session, from, n int) bool {
	for from < n {
		sent, errno := sendmmsg(s.fd, l.fwd.hs[from:n])
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			l.stats.sendFailed.Add(uint64(n - from))
			l.sendError(s, errno)
			return false
		}
		l.stats.toBackends.Add(uint64(sent))
		from += sent
	}
	return true
}

// sendError handles a failed send to s's backend. A full buffer loses the
// datagrams alone; an error from the backend's side ends the session, so
// that the flow's next datagram picks a backend afresh.
func (l *loop) sendError(s *session, errno syscall.Errno) {
	switch errno {
	case unix.EAGAIN, unix.ENOBUFS:
	case unix.ECONNREFUSED:
		l.end(s, EndBackendRefused, os.NewSyscallError("sendmmsg", errno))
	default:
		l.end(s, EndBackendError, os.NewSyscallError("sendmmsg", errno))
	}
}

// readReplies reads s's backend's replies into the reply batch, up to what
// Responses still allows, until the socket is empty or the round's share
// is used.
func (l *loop) readReplies(s *session) {
	for range roundBatches {
		if l.out.used == batchSize {
			l.flush()
		}
		from, to := l.out.used, batchSize
		if r := l.cf.Responses; r > 0 {
			if s.replies >= r {
				// A reload lowered Responses below what the
				// session has had already.
				l.end(s, EndResponses, nil)
				return
			}
			to = min(to, from+r-s.replies)
		}
		l.out.forReceive(from, to, false, false)
		n, errno := recvmmsg(s.fd, l.out.hs[from:to])
		switch errno {
		case 0:
		case unix.EAGAIN, unix.EINTR:
			return
		case unix.ECONNREFUSED:
			// ICMP port unreachable for an earlier datagram.
			l.end(s, EndBackendRefused, os.NewSyscallError("recvmmsg", errno))
			return
		default:
			l.end(s, EndBackendError, os.NewSyscallError("recvmmsg", errno))
			return
		}
		if s.replies == 0 {
			// The backend answered: for passive checks the session
			// worked, as a TCP connection does on its first byte
			// back. Once per session, not per datagram.
			s.be.ReportSuccess()
		}
		l.stats.fromBackends.Add(uint64(n))
		for i := from; i < from+n; i++ {
			l.out.reply(i, s)
			l.outSess[i] = s
			s.dgOut++
			s.out += int64(l.out.hs[i].n)
		}
		l.out.used = from + n
		s.replies += n
		l.idle.touch(s, l.now)
		if l.cf.Responses > 0 && s.replies >= l.cf.Responses {
			// The replies stay queued: they point at the session,
			// which nothing reuses.
			l.end(s, EndResponses, nil)
			return
		}
		if n < to-from {
			return
		}
	}
}

// flush sends the queued replies to their clients, in one sendmmsg: each
// session's run of replies that segmentation offload can carry as one
// message (see gsoRun), the rest one by one. Datagrams that cannot be sent
// at once are dropped: waiting would stall every other flow of the loop.
func (l *loop) flush() {
	k := 0
	for i := 0; i < l.out.used; {
		s := l.outSess[i]
		j := i + 1
		for j < l.out.used && l.outSess[j] == s {
			j++
		}
		k = l.coalesce(s, l.out.hs[i:j], s.source(), i, k)
		i = j
	}
	for x := 0; x < k; {
		n, errno := sendmmsg(l.fd, l.send[x:k])
		switch {
		case errno == 0:
			l.stats.toClients.Add(l.segments(x, x+n))
			x += n
		case errno == unix.EINTR:
		case l.sendSegs[x] > 1 && gsoRefused(errno):
			first := l.sendFrom[x]
			l.outSess[first].noGSO = true
			l.flushEach(first, first+l.sendSegs[x])
			x++
		default:
			// This message could not go (the client's address
			// unreachable, or the buffer full); the rest may.
			l.stats.sendFailed.Add(uint64(l.sendSegs[x]))
			x++
		}
	}
	clear(l.outSess[:l.out.used]) // no ended session kept reachable
	l.out.used = 0
}

// flushEach sends replies from..to of l.out one datagram each.
func (l *loop) flushEach(from, to int) {
	hs := l.out.hs[from:to]
	for len(hs) > 0 {
		n, errno := sendmmsg(l.fd, hs)
		switch errno {
		case 0:
			l.stats.toClients.Add(uint64(n))
		case unix.EINTR:
			continue
		default:
			l.stats.sendFailed.Add(1)
			n = 1
		}
		hs = hs[n:]
	}
}

// coalesce appends session s's headers hs (the datagrams from base on of
// l.fwd or l.out) to l.send, which holds k already, and returns how many
// it holds then: a run that segmentation offload can carry becomes one
// header, with oob (a source address message, maybe none) and UDP_SEGMENT
// as its control messages; the other headers are copied as they are.
func (l *loop) coalesce(s *session, hs []mmsghdr, oob []byte, base, k int) int {
	for i := 0; i < len(hs); {
		m := 1
		if !s.noGSO {
			m = gsoRun(hs[i:])
		}
		h := &l.send[k]
		*h = hs[i]
		if m > 1 {
			// The run's iovecs follow each other (see batch.point
			// and batch.forReceive).
			iovs := 0
			for _, x := range hs[i : i+m] {
				iovs += int(x.hdr.Iovlen)
			}
			h.hdr.SetIovlen(iovs)
			l.ctls[k].set(&h.hdr, oob, hs[i].n)
		}
		l.sendFrom[k], l.sendSegs[k] = base+i, m
		k++
		i += m
	}
	return k
}

// segments returns how many datagrams headers from..to of l.send carry.
func (l *loop) segments(from, to int) uint64 {
	n := 0
	for _, m := range l.sendSegs[from:to] {
		n += m
	}
	return uint64(n)
}

// end closes s's socket, forgets it and logs its line. Ending a session
// twice does nothing.
func (l *loop) end(s *session, e End, err error) {
	if s.fd < 0 {
		return
	}
	delete(l.flows, s.key)
	l.idle.remove(s)
	l.slots[s.slot] = nil
	l.free = append(l.free, s.slot)
	unix.Close(s.fd)
	s.fd = -1
	s.be.Release()
	l.s.live.Add(-1)
	if (e == EndBackendRefused || e == EndBackendError) && !localFailure(err) {
		// Once per session, as TCP reports once per connection.
		s.be.ReportFailure(err)
	}
	l.s.Counters.ended(s.bc, e, s.in, s.out, l.now-s.start)
	log := l.s.logger()
	if !log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	attrs := []slog.Attr{
		slog.String("listener", l.s.Name),
		slog.String("client", s.key.clientAddr().String()),
	}
	if via := s.key.viaAddr(); via.IsValid() {
		attrs = append(attrs, slog.String("via", via.String()))
	}
	attrs = append(attrs,
		slog.String("backend", s.be.String()),
		slog.Int64("datagrams_in", s.dgIn),
		slog.Int64("bytes_in", s.in),
		slog.Int64("datagrams_out", s.dgOut),
		slog.Int64("bytes_out", s.out),
		slog.Duration("duration", l.now-s.start),
		slog.String("end", e.String()),
	)
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	log.LogAttrs(context.Background(), slog.LevelInfo, "session", attrs...)
}

// localFailure reports whether err, from opening a session's socket or
// moving its datagrams, is this host's doing (out of fds, memory, buffer
// space or local ports; a datagram too large to send) rather than the
// backend's: other backends would fail the same way, so passive checks do
// not count it.
func localFailure(err error) bool {
	for _, e := range [...]syscall.Errno{unix.EMFILE, unix.ENFILE, unix.ENOMEM, unix.ENOBUFS,
		unix.EAGAIN, unix.EADDRNOTAVAIL, unix.EADDRINUSE, unix.EMSGSIZE, unix.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// warnLimit limits a kind of warning to one line a second per loop: when
// the cap is reached or fds run out, every new flow fails at once.
type warnLimit struct {
	also string        // key of the count of events not logged
	last time.Duration // when the line was last logged, on the loop's clock
	n    int           // events not logged since
}

// warn logs msg with attr unless a line went out less than a second ago.
// The line counts, under w.also, the events not logged since the one
// before.
func (w *warnLimit) warn(l *loop, msg string, attr slog.Attr) {
	if l.now-w.last < time.Second {
		w.n++
		return
	}
	l.s.logger().LogAttrs(context.Background(), slog.LevelWarn, msg, slog.String("listener", l.s.Name),
		attr, slog.Int(w.also, w.n))
	w.last, w.n = l.now, 0
}

// strip runs the Preamble on datagram i, whose key k is its sender's:
// it records how many bytes to take off and, if the header named another
// client, makes that client k's and the sender its via. It reports false
// if the datagram is to be dropped.
func (l *loop) strip(k *flowKey, i int) bool {
	// The loop's own Client: a local one, passed to an interface,
	// would be allocated for every datagram.
	c := &l.client1
	*c = Client{Addr: k.clientAddr(), Local: l.localOf(k)}
	sender := c.Addr
	n, err := l.cf.Preamble.StripDatagram(l.in.data(i), c)
	if err != nil {
		l.stats.droppedPreamble.Add(1)
		// slog.Any keeps err as it is: its text is made only for the
		// line logged, not for every datagram dropped.
		l.badPre.warn(l, "udp datagram dropped: bad or unexpected PROXY header", slog.Any("error", err))
		return false
	}
	l.off[i], l.toward[i] = n, c.Local
	if c.Addr != sender {
		k.via, k.viaPort = k.client, k.port
		k.client, k.port = c.Addr.Addr().As16(), c.Addr.Port()
	}
	return true
}

// localOf is the address flow k's client sent to: its datagram's
// destination on a listener bound to every address, else the listener's.
func (l *loop) localOf(k *flowKey) netip.AddrPort {
	if l.pktinfo {
		return netip.AddrPortFrom(netip.AddrFrom16(k.local).Unmap(), l.local.Port())
	}
	return l.local
}

// client is the Client of flow k, as datagram i (its first) showed it.
func (l *loop) client(k flowKey, i int) Client {
	c := Client{Addr: k.clientAddr(), Via: k.viaAddr(), Local: l.localOf(&k)}
	if l.cf.Preamble != nil && l.toward[i].IsValid() {
		c.Local = l.toward[i]
	}
	return c
}

// admit asks the Admitter, if any, whether new flow k (of datagram i) may
// have a session.
func (l *loop) admit(k flowKey, i int) bool {
	if l.cf.Admit == nil {
		return true
	}
	c := l.client(k, i)
	if err := l.cf.Admit.AdmitFlow(&c); err != nil {
		l.stats.droppedRefused.Add(1)
		l.refusals.warn(l, "udp new flow refused", slog.Any("error", err))
		return false
	}
	return true
}
