package l7

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"sluice/internal/pool"
	"sluice/l7/route"
)

// inBufSize is a client connection's read buffer: request heads are parsed
// in it in place. A head that does not fit, under MaxHeaderBytes, is
// handed to net/http, which reads larger ones.
const inBufSize = 16 << 10

var inBufs = sync.Pool{New: func() any { return new([inBufSize]byte) }}

// Connection states, for the drain: an idle connection is woken and closed,
// a busy one closes after its response.
const (
	connBusy int32 = iota
	connIdle
)

// fastConn is one client connection on the fast path. Its goroutine owns
// it; other goroutines only wake it (wakeIfIdle) or close its sockets
// (abort).
type fastConn struct {
	s       *Server
	c       *net.TCPConn
	release func() // MaxConnections slot; nil without a cap
	peer    netip.AddrPort
	buf     *[inBufSize]byte
	in      []byte // buf[:]
	start   int    // unconsumed bytes are in[start:end]
	end     int
	state   atomic.Int32
	backend atomic.Pointer[net.TCPConn] // in use, for abort
	aborted atomic.Bool
	rng     *rand.ChaCha8 // request IDs without a system call each
	rdl     time.Time     // c's read deadline, as armRead set it
	served  int           // requests answered
	handed  bool          // the connection went to net/http

	h       reqHead
	ex      exchange
	status  int
	bytesIn int64
	out     int64 // response bytes written to the client
	close   bool  // close after this response
	idBuf   [32]byte
	pathBuf []byte    // the unescaped path, when the target has escapes
	vals    [8]string // Values' answer
	bufs    *fastBufs // lent for a forwarded request
	f       fwd
	tried   [8]*pool.Backend // dial.TryIn's
	date    dateCache
}

// fastConns keeps connection states with their buffers and random
// streams for the next connection: a new connection then costs no
// allocation and no getrandom call of ours.
var fastConns = sync.Pool{New: func() any {
	fc := &fastConn{buf: new([inBufSize]byte)}
	fc.in = fc.buf[:]
	var seed [32]byte
	crand.Read(seed[:])
	fc.rng = rand.NewChaCha8(seed)
	return fc
}}

// serveConn serves one client connection until it closes, or hands it to
// net/http.
func (s *Server) serveConn(c *net.TCPConn, release func()) {
	fc := fastConns.Get().(*fastConn)
	fc.s, fc.c, fc.release = s, c, release
	fc.peer = netip.AddrPort{}
	if ta, _ := c.RemoteAddr().(*net.TCPAddr); ta != nil {
		ap := ta.AddrPort()
		fc.peer = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	s.fast.conns.Store(fc, struct{}{})
	fc.serve()
	s.fast.conns.Delete(fc)
	if !fc.handed {
		c.Close()
		if release != nil {
			release()
		}
	}
	fc.reset()
	fastConns.Put(fc)
}

// reset clears what a connection leaves in its state, keeping the
// buffers and the random stream.
func (fc *fastConn) reset() {
	fc.s, fc.c, fc.release = nil, nil, nil
	fc.start, fc.end, fc.served = 0, 0, 0
	fc.rdl = time.Time{}
	fc.handed, fc.close = false, false
	fc.state.Store(connBusy)
	fc.backend.Store(nil)
	fc.aborted.Store(false)
	fc.ex, fc.f, fc.tried = exchange{}, fwd{}, [8]*pool.Backend{}
}

// serve runs the request loop until the connection ends or goes to
// net/http (fc.handed).
func (fc *fastConn) serve() {
	for {
		switch fc.readHead() {
		case headHandOff:
			fc.handOff()
			return
		case headNeedMore: // closed, timed out, or refused with 431
			return
		}
		if !fc.serveRequest() {
			return
		}
	}
}

// readHead reads until in[start:] holds a whole request head.
func (fc *fastConn) readHead() headStatus {
	s := fc.s
	max := orDefault(s.MaxHeaderBytes, DefaultMaxHeaderBytes)
	var headStart time.Time
	for {
		if fc.end > fc.start {
			switch parseHead(fc.in[fc.start:fc.end], &fc.h) {
			case headOK:
				if fc.h.size > max {
					fc.refuseHead(http.StatusRequestHeaderFieldsTooLarge)
					return headNeedMore
				}
				return headOK
			case headHandOff:
				return headHandOff
			}
			if fc.end-fc.start > max {
				fc.refuseHead(http.StatusRequestHeaderFieldsTooLarge)
				return headNeedMore
			}
		}
		if fc.start > 0 {
			fc.end = copy(fc.in, fc.in[fc.start:fc.end])
			fc.start = 0
		}
		if fc.end == len(fc.in) {
			if fc.end > max {
				fc.refuseHead(http.StatusRequestHeaderFieldsTooLarge)
				return headNeedMore
			}
			return headHandOff // net/http reads heads this large
		}
		idle := fc.end == 0
		if idle {
			fc.state.Store(connIdle)
			if s.fast.draining.Load() {
				return headNeedMore
			}
			if d := orDefault(s.IdleTimeout, DefaultIdleTimeout); d > 0 {
				armRead(fc.c, &fc.rdl, time.Now().Add(d), min(d/8, time.Second))
			}
		} else if headStart.IsZero() {
			headStart = time.Now()
			if d := orDefault(s.ReadHeaderTimeout, DefaultReadHeaderTimeout); d > 0 {
				armRead(fc.c, &fc.rdl, headStart.Add(d), 0)
			}
		}
		n, err := fc.c.Read(fc.in[fc.end:])
		fc.state.Store(connBusy)
		fc.end += n
		if err != nil && n == 0 {
			return headNeedMore
		}
		if idle && s.fast.draining.Load() {
			fc.close = true // answer this one, then close
		}
	}
}

// refuseHead answers a head we will not read (431) and ends the
// connection, as net/http does.
func (fc *fastConn) refuseHead(status int) {
	fc.c.SetWriteDeadline(time.Now().Add(time.Second))
	fc.c.Write([]byte("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) +
		"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n" + strconv.Itoa(status) + " " + http.StatusText(status)))
}

// handOff gives the connection, with the bytes read and not answered, to
// net/http for the rest of its life.
func (fc *fastConn) handOff() {
	fc.c.SetReadDeadline(time.Time{})
	fc.handed = true
	fc.s.fast.handoffs.Add(1)
	hc := &handoffConn{Conn: fc.c, pending: append([]byte(nil), fc.in[fc.start:fc.end]...), release: fc.release}
	fc.s.fast.handoff.give(hc)
}

// wakeIfIdle makes an idle connection's read return, so that it sees the
// drain and closes.
func (fc *fastConn) wakeIfIdle() {
	if fc.state.Load() == connIdle {
		fc.c.SetReadDeadline(time.Now())
	}
}

// abort closes the connection's sockets from another goroutine: the drain
// ran out.
func (fc *fastConn) abort() {
	fc.aborted.Store(true)
	fc.c.Close()
	if b := fc.backend.Load(); b != nil {
		b.Close()
	}
}

// serveRequest answers the head in fc.h; it reports whether the
// connection goes on.
func (fc *fastConn) serveRequest() bool {
	s, h := fc.s, &fc.h
	fc.ex = exchange{start: time.Now(), peer: fc.peer}
	fc.status, fc.bytesIn, fc.out = 0, 0, 0
	fc.close = fc.close || h.close || h.upgrade
	ex := &fc.ex
	ex.client = fc.peer
	if len(s.TrustedProxies) > 0 {
		ex.client = s.realClient(fc.peer, fc)
	}
	ex.id = fc.requestID()
	path, ok := fc.unescapedPath()
	if !ok {
		return fc.handOffRequest()
	}
	s.Counters.started()
	keep := fc.route(path)
	if fc.status == -1 {
		if s.Counters != nil {
			s.Counters.current.Add(-1) // net/http counts it
		}
		return fc.handOffRequest()
	}
	fc.count()
	fc.logRequest(path)
	fc.backend.Store(nil)
	return keep && !fc.close
}

// handOffRequest hands the connection over with the request in hand, which
// the fast path has not answered; it reports false (the fast path is done
// with the connection) after arranging that serve hands it off.
func (fc *fastConn) handOffRequest() bool {
	fc.handOff()
	return false
}

// route finds the request's route and carries it out, as Server.route
// does for net/http's requests. A status of -1 asks for a hand-off.
func (fc *fastConn) route(path string) bool {
	s, h, ex := fc.s, &fc.h, &fc.ex
	if s.refuseFast(fc, s.limit) {
		return true
	}
	if max := orDefault(s.MaxURLBytes, DefaultMaxURLBytes); max > 0 && len(h.target) > max {
		return fc.local(http.StatusRequestURITooLong, EndURITooLong, "")
	}
	fc.served++
	if m := s.MaxRequestsPerConnection; m > 0 && fc.served >= m {
		fc.close = true
	}
	req := route.Request{
		Host:   route.CanonicalHost(str(h.host)),
		Path:   cleanPath(path),
		Method: str(h.method),
		Header: fc,
		Client: ex.client.Addr(),
	}
	rt := s.table.Find(&req)
	if rt == nil {
		if s.Default == "" {
			return fc.local(http.StatusNotFound, EndNotFound, "")
		}
		ex.route = "default"
		ex.key = ex.client
		return fc.forward(s.Default, nil)
	}
	ex.route = rt.Name
	switch rt.Check(&req) {
	case route.DenyClient:
		return fc.local(http.StatusForbidden, EndDenied, "")
	case route.DenyMethod:
		return fc.local(http.StatusMethodNotAllowed, EndMethodNotAllowed, "Allow: "+strings.Join(rt.AllowMethods, ", ")+"\r\n")
	}
	if s.routeLim != nil && s.refuseFast(fc, s.routeLim[rt]) {
		return true
	}
	switch rt.Kind {
	case route.Redirect:
		return fc.redirect(rt)
	case route.Respond:
		ex.end = EndResponded
		return fc.respond(rt.Status, rt.ContentType, rt.Body, "")
	}
	if !fastRoute(rt) {
		fc.status = -1
		return false
	}
	ex.key = fc.pickKey(rt)
	ex.rewrite = &rt.Rewrite
	return fc.forward(rt.Pool, rt)
}

// fastRoute reports whether the fast path serves a forwarding route:
// compression is net/http's (package compress works on its writer).
func fastRoute(rt *route.Route) bool { return !rt.Compress }

// refuseFast answers 429 if the client is over l's rate.
func (s *Server) refuseFast(fc *fastConn, l *rateLimit) bool {
	if l == nil || l.lim.Allow(fc.ex.client.Addr()) == nil {
		return false
	}
	fc.local(http.StatusTooManyRequests, EndRateLimited, "Retry-After: "+l.retry+"\r\n")
	return true
}

// requestID keeps a valid X-Request-Id or makes one from the
// connection's ChaCha8 stream. The string is valid for the request.
func (fc *fastConn) requestID() string {
	if v, ok := fc.h.header("x-request-id"); ok && len(v) > 0 && len(v) <= maxRequestIDLen && validID(str(v)) {
		return str(v)
	}
	var b [16]byte
	for i := 0; i < 16; i += 8 {
		u := fc.rng.Uint64()
		for j := range 8 {
			b[i+j] = byte(u >> (8 * j))
		}
	}
	hex.Encode(fc.idBuf[:], b[:])
	return str(fc.idBuf[:])
}

// unescapedPath returns the path as net/http's URL.Path has it, which
// routing and the log see; false if its escapes are invalid (net/http
// answers 400).
func (fc *fastConn) unescapedPath() (string, bool) {
	p := fc.h.path
	if strings.IndexByte(str(p), '%') < 0 {
		return str(p), true
	}
	var ok bool
	fc.pathBuf, ok = unescapePath(fc.pathBuf[:0], p)
	return str(fc.pathBuf), ok
}

// unescapePath appends p with its %XX escapes decoded to dst; false if an
// escape is not two hex digits.
func unescapePath(dst, p []byte) ([]byte, bool) {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c != '%' {
			dst = append(dst, c)
			continue
		}
		if i+2 >= len(p) {
			return dst, false
		}
		hi, ok1 := hexDigit(p[i+1])
		lo, ok2 := hexDigit(p[i+2])
		if !ok1 || !ok2 {
			return dst, false
		}
		dst = append(dst, hi<<4|lo)
		i += 2
	}
	return dst, true
}

// Values gives routing and realClient the request's header values by
// name, from a scratch array: no allocation for up to eight values.
func (fc *fastConn) Values(name string) []string {
	out := fc.vals[:0]
	for i := range fc.h.n {
		f := &fc.h.fields[i]
		if len(f.name) == len(name) && strings.EqualFold(str(f.name), name) {
			if len(out) == cap(out) {
				out = append([]string(nil), out...)
			}
			out = append(out, str(f.value))
		}
	}
	return out
}

// pickKey is pickKey (affinity.go) on the parsed head.
func (fc *fastConn) pickKey(rt *route.Route) netip.AddrPort {
	var v string
	switch {
	case rt.HashHeader != "":
		if vs := fc.Values(rt.HashHeader); len(vs) > 0 {
			v = vs[0]
		}
	case rt.HashCookie != "":
		v = fc.cookie(rt.HashCookie)
	}
	if v == "" {
		return fc.ex.client
	}
	return valueAddr(v)
}

// cookie returns the value of the named cookie, as http.Request.Cookie
// would (quotes removed).
func (fc *fastConn) cookie(name string) string {
	for _, line := range fc.Values("Cookie") {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if ok && k == name {
				if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
					v = v[1 : len(v)-1]
				}
				return v
			}
		}
	}
	return ""
}

// local answers with a small body naming the status, as Server.local.
func (fc *fastConn) local(status int, end End, extra string) bool {
	fc.ex.end = end
	text := http.StatusText(status)
	return fc.respond(status, "text/plain; charset=utf-8", strconv.Itoa(status)+" "+text+"\n", extra)
}

// redirect answers a redirect route as http.Redirect does.
func (fc *fastConn) redirect(rt *route.Route) bool {
	fc.ex.end = EndRedirect
	h := &fc.h
	uri := str(h.target)
	to := rt.RedirectTo(str(h.host), uri)
	body, ctype := "", ""
	if m := str(h.method); m == http.MethodGet || m == http.MethodHead {
		ctype = "text/html; charset=utf-8"
		body = "<a href=\"" + htmlEscape(to) + "\">" + http.StatusText(rt.Status) + "</a>.\n\n"
	}
	return fc.respond(rt.Status, ctype, body, "Location: "+headerSafe(to)+"\r\n")
}

// respond writes a whole response of ours; extra is more header lines.
func (fc *fastConn) respond(status int, ctype, body, extra string) bool {
	fc.status = status
	b := fc.scratch()
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	b = append(b, "\r\n"...)
	if ctype != "" {
		b = append(b, "Content-Type: "...)
		b = append(b, ctype...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\nX-Request-Id: "...)
	b = append(b, fc.ex.id...)
	b = append(b, "\r\n"...)
	b = append(b, extra...)
	b = fc.date.append(b)
	if fc.close || fc.h.contentLength > 0 || fc.h.chunked {
		// A body we did not read ends the connection: its bytes
		// are not the next request.
		fc.close = true
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "\r\n"...)
	if str(fc.h.method) != http.MethodHead {
		b = append(b, body...)
	}
	n, err := fc.c.Write(b)
	fc.out = int64(max(0, n-(len(b)-len(body))))
	fc.putScratch(b)
	if fc.h.upgrade {
		fc.close = true
	}
	if err != nil {
		return false
	}
	fc.consume(fc.h.size)
	return true
}

// consume marks n bytes of the buffer as answered.
func (fc *fastConn) consume(n int) {
	fc.start += n
	if fc.start >= fc.end {
		fc.start, fc.end = 0, 0
	}
}

// scratch returns the write buffer of the forwarding buffers, which a
// local answer borrows.
func (fc *fastConn) scratch() []byte {
	if fc.bufs == nil {
		fc.bufs = fastBufPool.Get().(*fastBufs)
	}
	return fc.bufs.wr[:0]
}

func (fc *fastConn) putScratch(b []byte) {
	if fc.bufs != nil {
		if cap(b) <= 64<<10 {
			fc.bufs.wr = b[:0]
		}
		fastBufPool.Put(fc.bufs)
		fc.bufs = nil
	}
}

// count adds the request to the listener's Counters, as Server.count.
func (fc *fastConn) count() {
	c := fc.s.Counters
	if c == nil {
		return
	}
	ex := &fc.ex
	k := RequestKey{Route: ex.route, Status: loggedStatus(fc.status, ex.end), End: ex.end}
	if ex.backend != nil {
		k.Backend = ex.backend.Addr
	}
	c.ended(k, fc.bytesIn, fc.out, ex.retries, time.Since(ex.start))
}

// logRequest writes the request's log line.
func (fc *fastConn) logRequest(path string) {
	s := fc.s
	if !s.logger().Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	h := &fc.h
	// The head's bytes are reused by the next request: the line gets
	// copies, in one allocation.
	all := string(h.method) + string(h.host) + path + fc.ex.id + string(h.target)
	m, rest := cut(all, len(h.method))
	host, rest := cut(rest, len(h.host))
	p, rest := cut(rest, len(path))
	id, uri := cut(rest, len(fc.ex.id))
	fc.ex.id = id
	e := logEntry{method: m, host: host, path: p, proto: "HTTP/1.1", status: loggedStatus(fc.status, fc.ex.end),
		bytesIn: fc.bytesIn, bytesOut: fc.out}
	if s.LogRequestLine {
		e.uri = uri
		if v, ok := h.header("referer"); ok {
			e.referer = string(v)
		}
		if v, ok := h.header("user-agent"); ok {
			e.agent = string(v)
		}
		if v, ok := h.header("authorization"); ok {
			r := http.Request{Header: http.Header{"Authorization": {string(v)}}}
			e.user, _, _ = r.BasicAuth()
		}
	}
	s.logExchange(&fc.ex, &e)
}

func cut(s string, n int) (string, string) { return s[:n], s[n:] }

// htmlEscape escapes a URL for an href, as http.Redirect does.
func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}

// headerSafe drops bytes a header value may not hold.
func headerSafe(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f {
			return dropControls(s)
		}
	}
	return s
}

func dropControls(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

// dateCache formats the Date header once a second.
type dateCache struct {
	sec  int64
	line []byte
}

func (d *dateCache) append(b []byte) []byte {
	now := time.Now()
	if now.Unix() != d.sec || d.line == nil {
		d.sec = now.Unix()
		d.line = append(d.line[:0], "Date: "...)
		d.line = now.UTC().AppendFormat(d.line, http.TimeFormat)
		d.line = append(d.line, "\r\n"...)
	}
	return append(b, d.line...)
}

var errClientGone = errors.New("l7: client closed the connection")

// armRead sets c's read deadline to at, unless the one set already (*cur)
// falls within slack before it: re-arming a timer for every request costs
// more than a deadline a little early, the trade l4's loop timers make.
func armRead(c *net.TCPConn, cur *time.Time, at time.Time, slack time.Duration) {
	if !cur.IsZero() && !cur.After(at) && !cur.Before(at.Add(-slack)) {
		return
	}
	*cur = at
	c.SetReadDeadline(at)
}

// clearRead removes c's read deadline.
func clearRead(c *net.TCPConn, cur *time.Time) {
	if !cur.IsZero() {
		*cur = time.Time{}
		c.SetReadDeadline(time.Time{})
	}
}
