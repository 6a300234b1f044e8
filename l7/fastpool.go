package l7

import (
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"sluice/internal/pool"
)

// idlePool keeps the fast path's idle keep-alive connections to each
// backend of an upstream, newest first out: the most recently used
// connection is the likeliest to be open at the backend's end too.
type idlePool struct {
	max     int
	timeout time.Duration
	lists   sync.Map // *pool.Backend → *idleList; read without a lock
}

type idleList struct {
	mu    sync.Mutex
	conns []idleConn // oldest first
}

type idleConn struct {
	c     *net.TCPConn
	since time.Time
	dl    time.Time // its read deadline, left from its last request
}

// get returns an idle connection to b, or nil.
func (p *idlePool) get(b *pool.Backend) (*net.TCPConn, time.Time) {
	v, ok := p.lists.Load(b)
	if !ok {
		return nil, time.Time{}
	}
	l := v.(*idleList)
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.conns) > 0 {
		ic := l.conns[len(l.conns)-1]
		l.conns = l.conns[:len(l.conns)-1]
		idle := time.Since(ic.since)
		if idle < p.timeout && (idle < staleAfter || open(ic.c)) {
			return ic.c, ic.dl
		}
		ic.c.Close()
	}
	return nil, time.Time{}
}

// staleAfter is how long a kept connection may sit idle before it is
// checked before use: servers close idle connections after seconds
// (nginx 75 s, Apache 5 s), and a request sent on one that is closed
// can be sent again only if it is idempotent. A check is a system call;
// under load connections are reused within milliseconds and skip it.
var staleAfter = time.Second // a variable for tests

// open reports whether the backend has not closed or reset c: a peek
// that finds nothing to read.
func open(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	var b [1]byte
	rc.Control(func(fd uintptr) {
		_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		ok = err == unix.EAGAIN // data or EOF: not a connection to send a request on
	})
	return ok
}

// put keeps c for b's next request, or closes it when b has max idle.
func (p *idlePool) put(b *pool.Backend, c *net.TCPConn, dl time.Time) {
	if c == nil {
		return
	}
	v, ok := p.lists.Load(b)
	if !ok {
		v, _ = p.lists.LoadOrStore(b, &idleList{})
	}
	l := v.(*idleList)
	l.mu.Lock()
	if len(l.conns) < p.max {
		// Its read deadline may be stale: the next request sets
		// one before it reads.
		l.conns = append(l.conns, idleConn{c: c, since: time.Now(), dl: dl})
		c = nil
	}
	l.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// reap closes the connections idle for the timeout or longer; all of them
// if all is set.
func (p *idlePool) reap(all bool) {
	p.lists.Range(func(_, v any) bool {
		l := v.(*idleList)
		l.mu.Lock()
		i := 0
		for i < len(l.conns) && (all || time.Since(l.conns[i].since) >= p.timeout) {
			l.conns[i].c.Close()
			i++
		}
		l.conns = append(l.conns[:0], l.conns[i:]...)
		l.mu.Unlock()
		return true
	})
}

// runReaper closes expired idle connections of every upstream until the
// server's base context ends.
func (s *Server) runReaper() {
	every := max(orDefault(s.BackendIdleTimeout, DefaultBackendIdle)/4, 100*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			for _, p := range s.proxies {
				p.idle.reap(false)
			}
		case <-s.base.Done():
			return
		}
	}
}

// headerEdit is the header of a message on its way through: the fields as
// received, some dropped, and fields added. It is the route.HeaderEditor
// that a route's header rules work on, without a map.
type headerEdit struct {
	fields []field
	drop   [maxRespFields]bool
	extra  []kv
	arr    [16]kv
	vals   []byte // values built for the added fields
}

type kv struct{ name, value string }

func (e *headerEdit) reset(fields []field) {
	e.fields = fields
	clear(e.drop[:len(fields)])
	e.extra = e.arr[:0]
	if e.vals == nil {
		e.vals = make([]byte, 0, 512)
	}
	e.vals = e.vals[:0]
}

// Del drops every field named name.
func (e *headerEdit) Del(name string) {
	for i := range e.fields {
		if len(e.fields[i].name) == len(name) && strings.EqualFold(str(e.fields[i].name), name) {
			e.drop[i] = true
		}
	}
	out := e.extra[:0]
	for _, f := range e.extra {
		if !strings.EqualFold(f.name, name) {
			out = append(out, f)
		}
	}
	e.extra = out
}

// Set replaces the fields named name with one.
func (e *headerEdit) Set(name, value string) {
	e.Del(name)
	e.add(name, value)
}

func (e *headerEdit) add(name, value string) { e.extra = append(e.extra, kv{name, value}) }

// appendTo appends the header's lines.
func (e *headerEdit) appendTo(b []byte) []byte {
	for i := range e.fields {
		if e.drop[i] {
			continue
		}
		f := &e.fields[i]
		b = append(b, f.name...)
		b = append(b, ": "...)
		b = append(b, f.value...)
		b = append(b, "\r\n"...)
	}
	for _, f := range e.extra {
		b = append(b, f.name...)
		b = append(b, ": "...)
		b = append(b, headerSafe(f.value)...)
		b = append(b, "\r\n"...)
	}
	return b
}
