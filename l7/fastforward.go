package l7

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"sluice/internal/dial"
	"sluice/internal/pool"
	"sluice/l7/route"
)

// fastBufs are a forwarded request's buffers, lent from a pool for the
// request only, so an idle keep-alive connection holds just its read
// buffer.
type fastBufs struct {
	bk   [32 << 10]byte // the backend's response
	wr   []byte         // heads as they are written
	resp respHead
	req  headerEdit
	rsp  headerEdit
}

var fastBufPool = sync.Pool{New: func() any { return &fastBufs{wr: make([]byte, 0, 4<<10)} }}

// Errors that end a forwarded request on the client's side: not the
// backend's to answer for, never retried.
var (
	errClientBody  = errors.New("l7: reading the request body")
	errBodyTooBig  = errors.New("l7: request body over max_body_bytes")
	errRespTimeout = errors.New("l7: backend response timeout")
)

// abortPoll is how often a request waiting for its response head looks
// whether its client went away (net/http keeps a read going instead: a
// goroutine's worth of work per request).
var abortPoll = 500 * time.Millisecond // a variable for tests

// fwd is one forwarded request's state.
type fwd struct {
	p        *proxy
	wr       []byte // the request head, and the body bytes read with it
	inBody   int    // body bytes of in[] sent with the head
	more     bool   // a chunked body goes on past them
	streamed bool   // more body was read from the client: no retry
	bc       *net.TCPConn
	bdl      time.Time // bc's read deadline (armRead)
	reused   bool
	got      int // response bytes read into bk
	chunks   chunkScanner
}

// forward sends the request to a backend of the named upstream and passes
// its response on; it reports whether the connection goes on.
func (fc *fastConn) forward(upstream string, rt *route.Route) bool {
	s, h, ex := fc.s, &fc.h, &fc.ex
	p := s.proxies[upstream]
	if p == nil {
		return fc.local(http.StatusServiceUnavailable, EndNoBackend, "")
	}
	if p.scheme != "http" || p.h2c {
		fc.status = -1 // HTTP/2 or TLS to the backend: net/http's
		return false
	}
	if s.MaxBodyBytes > 0 && h.contentLength > s.MaxBodyBytes {
		return fc.local(http.StatusRequestEntityTooLarge, EndBodyTooLarge, "")
	}
	fc.bufs = fastBufPool.Get().(*fastBufs)
	defer fc.putScratch(fc.bufs.wr)
	f := &fc.f
	*f = fwd{p: p}
	if err := fc.buildRequest(f); err != nil {
		return fc.clientFailed(f, err)
	}
	ex.pool = p
	b, retries, err := dial.TryIn(s.base, p.pool, ex.key, fc.tried[:0], func(b *pool.Backend) error { return fc.attempt(f, b) })
	ex.retries = retries
	if err != nil {
		return fc.failed(f, err)
	}
	ex.backend = b
	defer b.Release()
	ex.ttfb = time.Since(ex.start)
	return fc.relay(f, b)
}

// attempt sends the request to b and reads its response head. A kept
// connection the backend closed meanwhile is replaced by a new one once,
// if the request can be sent again.
func (fc *fastConn) attempt(f *fwd, b *pool.Backend) error {
	for fresh := false; ; fresh = true {
		f.bc, f.bdl, f.reused, f.got = nil, time.Time{}, false, 0
		if !fresh {
			f.bc, f.bdl = f.p.idle.get(b)
			f.reused = f.bc != nil
		}
		if f.bc == nil {
			c, err := dial.Connect(fc.s.base, &f.p.dialer, b.String())
			if err != nil {
				return err
			}
			f.bc = c
		}
		fc.backend.Store(f.bc)
		err := fc.send(f)
		if err == nil {
			err = fc.readResponseHead(f)
		}
		if err == nil {
			f.p.passive(b, fc.bufs.resp.status)
			return nil
		}
		f.bc.Close()
		fc.backend.Store(nil)
		switch {
		case errors.Is(err, errClientBody), errors.Is(err, errBodyTooBig), errors.Is(err, errClientGone):
			return err
		case errors.Is(err, errRespTimeout):
			b.ReportFailure(err)
			return err
		case f.got == 0 && f.reused && !f.streamed && fc.replayable():
			continue // a stale kept connection: not the backend's fault
		case f.got == 0 && !f.streamed && idempotent(str(fc.h.method)):
			return dial.Retry(err)
		}
		b.ReportFailure(err)
		return err
	}
}

// replayable reports whether the request may be sent again on a new
// connection after a kept one failed with nothing read, as net/http's
// transport decides: idempotent, or no body.
func (fc *fastConn) replayable() bool {
	return idempotent(str(fc.h.method)) || fc.h.contentLength <= 0 && !fc.h.chunked
}

// buildRequest writes the head to send into f.wr, with the body bytes
// already read behind it.
func (fc *fastConn) buildRequest(f *fwd) error {
	s, h, ex := fc.s, &fc.h, &fc.ex
	e := &fc.bufs.req
	e.reset(h.fields[:h.n])
	for i := range h.n {
		fd := &h.fields[i]
		switch fd.kind {
		case fieldConnection, fieldForwarding, fieldRequestID:
			e.drop[i] = true
		case fieldHopByHop:
			// "TE: trailers" goes on, as httputil.ReverseProxy
			// sends it: trailers of chunked responses pass through.
			e.drop[i] = !(equalFold(fd.name, "te") && equalFold(fd.value, "trailers"))
		case fieldUpgrade:
			e.drop[i] = !h.upgrade
		default:
			e.drop[i] = h.named(fd)
		}
	}
	// Forwarding fields, replaced unless the peer is a trusted proxy.
	host := str(h.host)
	trusted := len(s.TrustedProxies) > 0 && s.trusted(ex.peer.Addr())
	vals := e.vals[:0]
	start := len(vals)
	vals = ex.peer.Addr().AppendTo(vals)
	peer := str(vals[start:])
	xff, xfp, xfh := peer, "http", host
	fwdStart := len(vals)
	vals = appendForwarded(vals, ex.peer.Addr(), host)
	fwdElem := str(vals[fwdStart:])
	if trusted {
		if prior := joinValues(fc.Values("X-Forwarded-For")); prior != "" {
			xff = prior + ", " + peer
		}
		if prior := joinValues(fc.Values("Forwarded")); prior != "" {
			fwdElem = prior + ", " + fwdElem
		}
		if v := fc.Values("X-Forwarded-Proto"); len(v) > 0 && v[0] != "" {
			xfp = string(v[0])
		}
		if v := fc.Values("X-Forwarded-Host"); len(v) > 0 && v[0] != "" {
			xfh = string(v[0])
		}
	}
	e.vals = vals
	e.add("X-Forwarded-For", xff)
	e.add("X-Forwarded-Proto", xfp)
	e.add("X-Forwarded-Host", xfh)
	e.add("Forwarded", fwdElem)
	target := str(h.target)
	if rw := ex.rewrite; rw != nil {
		if rw.StripPrefix != "" || rw.AddPrefix != "" {
			target = rw.Path(str(h.path))
			if h.query != nil {
				target += "?" + str(h.query)
			}
		}
		if rw.Host != "" {
			e.Set("Host", rw.Host)
		}
		rw.Request(e)
	}
	e.Set(requestIDHeader, ex.id)
	if h.upgrade {
		e.add("Connection", "Upgrade")
	}
	b := fc.bufs.wr[:0]
	b = append(b, h.method...)
	b = append(b, ' ')
	b = append(b, target...)
	b = append(b, " HTTP/1.1\r\n"...)
	b = e.appendTo(b)
	b = append(b, "\r\n"...)
	// The body bytes read with the head go with it.
	avail := fc.in[fc.start+h.size : fc.end]
	switch {
	case h.chunked:
		n, done, err := f.chunks.scan(avail)
		if err != nil {
			return fmt.Errorf("%w: %w", errClientBody, err)
		}
		if s.MaxBodyBytes > 0 && f.chunks.data > s.MaxBodyBytes {
			return errBodyTooBig
		}
		b = append(b, avail[:n]...)
		f.inBody, f.more = n, !done
		fc.bytesIn = f.chunks.data
	case h.contentLength > 0:
		n := int(min(int64(len(avail)), h.contentLength))
		b = append(b, avail[:n]...)
		f.inBody = n
		fc.bytesIn = int64(n)
	}
	f.wr = b
	fc.bufs.wr = b
	return nil
}

// joinValues joins a field's values as one list.
func joinValues(vs []string) string {
	switch len(vs) {
	case 0:
		return ""
	case 1:
		return vs[0]
	}
	out := vs[0]
	for _, v := range vs[1:] {
		out += ", " + v
	}
	return out
}

// appendForwarded appends an RFC 7239 element for a hop (see
// forwardedElement).
func appendForwarded(b []byte, peer netip.Addr, host string) []byte {
	b = append(b, "for="...)
	if peer.Is6() {
		b = append(b, `"[`...)
	}
	b = peer.AppendTo(b)
	if peer.Is6() {
		b = append(b, `]"`...)
	}
	if host != "" {
		b = append(b, ";host="...)
		b = append(b, quoteForwarded(host)...)
	}
	return append(b, ";proto=http"...)
}

// send writes the request to f.bc: the head and the body bytes read with
// it, then the rest of the body as it comes from the client.
func (fc *fastConn) send(f *fwd) error {
	if _, err := f.bc.Write(f.wr); err != nil {
		return err
	}
	h := &fc.h
	switch {
	case h.chunked && f.more:
		return fc.sendChunks(f)
	case h.chunked:
	case h.contentLength > int64(f.inBody):
		f.streamed = true
		clearRead(fc.c, &fc.rdl)
		rest := h.contentLength - int64(f.inBody)
		n, err := io.CopyN(f.bc, fc.c, rest) // spliced
		fc.bytesIn += n
		if err != nil && n < rest {
			if errors.Is(err, io.EOF) || fc.clientErr(err) {
				return fmt.Errorf("%w: %w", errClientBody, err)
			}
			return err
		}
	}
	return nil
}

// clientErr reports whether a copy from the client to f's backend failed
// on the client's side. io.CopyN does not say which side failed: a
// socket that is still open on our side and has a pending error is
// asked.
func (fc *fastConn) clientErr(err error) bool {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Op == "read" || oe.Op == "readfrom" && sockErr(fc.c) != nil
	}
	return false
}

// sockErr returns the socket's pending error (SO_ERROR), if any.
func sockErr(c *net.TCPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var soErr int
	rc.Control(func(fd uintptr) { soErr, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR) })
	if soErr != 0 {
		return syscall.Errno(soErr)
	}
	return nil
}

// sendChunks passes on the rest of a chunked request body, checking its
// framing and its size as it goes. Bytes after its end (a pipelined
// request) are not kept: the connection closes after the response.
func (fc *fastConn) sendChunks(f *fwd) error {
	f.streamed = true
	clearRead(fc.c, &fc.rdl)
	buf := fc.bufs.bk[:]
	for {
		n, err := fc.c.Read(buf)
		if n > 0 {
			k, done, serr := f.chunks.scan(buf[:n])
			fc.bytesIn = f.chunks.data
			if serr != nil {
				return fmt.Errorf("%w: %w", errClientBody, serr)
			}
			if s := fc.s; s.MaxBodyBytes > 0 && f.chunks.data > s.MaxBodyBytes {
				return errBodyTooBig
			}
			if _, err := f.bc.Write(buf[:k]); err != nil {
				return err
			}
			if done {
				if k < n {
					fc.close = true
				}
				return nil
			}
		}
		if err != nil {
			return fmt.Errorf("%w: %w", errClientBody, err)
		}
	}
}

// readResponseHead reads the response head into bk, passing 1xx interim
// responses on (RFC 9110 section 15.2). While it waits it looks every
// abortPoll whether the client went away, and gives up after
// ResponseTimeout.
func (fc *fastConn) readResponseHead(f *fwd) error {
	s := fc.s
	bk := fc.bufs.bk[:]
	r := &fc.bufs.resp
	var deadline time.Time
	if s.ResponseTimeout > 0 {
		// From the request's end, as http.Transport's
		// ResponseHeaderTimeout.
		deadline = time.Now().Add(s.ResponseTimeout)
	}
	for {
		if f.got > 0 {
			st, err := parseResponse(bk[:f.got], r)
			if err != nil {
				return err
			}
			if st == headOK {
				if r.status >= 200 || r.status == 101 {
					return nil
				}
				// An interim response: on to the client as it is.
				if _, err := fc.c.Write(bk[:r.size]); err != nil {
					return errClientGone
				}
				f.got = copy(bk, bk[r.size:f.got])
				continue
			}
			if f.got == len(bk) {
				return fmt.Errorf("%w: head over %d bytes", errBadResponse, len(bk))
			}
		}
		// Without a response timeout the wake-up only polls the
		// client: one left from the connection's last request will
		// do if it is not too near.
		wait, slack := time.Now().Add(abortPoll), abortPoll/2
		if !deadline.IsZero() && deadline.Before(wait) {
			wait, slack = deadline, 0
		}
		armRead(f.bc, &f.bdl, wait, slack)
		n, err := f.bc.Read(bk[f.got:])
		f.got += n
		if err == nil || n > 0 {
			continue
		}
		if !isTimeout(err) {
			return err
		}
		f.bdl = time.Time{} // passed: re-arm
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return errRespTimeout
		}
		if fc.clientGone() {
			return errClientGone
		}
	}
}

// clientGone reports whether the client closed its side or reset: a
// non-blocking peek reads 0 bytes or fails.
func (fc *fastConn) clientGone() bool {
	rc, err := fc.c.SyscallConn()
	if err != nil {
		return true
	}
	gone := false
	var b [1]byte
	rc.Control(func(fd uintptr) {
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		gone = n == 0 && err == nil || err != nil && err != unix.EAGAIN && err != unix.EINTR
	})
	return gone
}

// failed answers a request no backend answered, as proxy.fail does.
func (fc *fastConn) failed(f *fwd, err error) bool {
	ex := &fc.ex
	var ce *dial.ConnectError
	switch {
	case errors.Is(err, errClientGone):
		ex.end = EndClientAborted
		return false
	case errors.Is(err, errBodyTooBig), errors.Is(err, errClientBody):
		return fc.clientFailed(f, err)
	case errors.Is(err, dial.ErrNoBackend):
		ex.err = err
		return fc.local(http.StatusServiceUnavailable, EndNoBackend, "")
	case errors.As(err, &ce):
		ex.err = err
		return fc.local(http.StatusBadGateway, EndConnectFailed, "")
	case errors.Is(err, errRespTimeout), isTimeout(err):
		ex.err = err
		return fc.local(http.StatusGatewayTimeout, EndBackendTimeout, "")
	}
	ex.err = err
	return fc.local(http.StatusBadGateway, EndBackendReset, "")
}

// clientFailed answers a request whose body could not be forwarded: too
// large (413), badly framed (400), or cut off (no answer).
func (fc *fastConn) clientFailed(f *fwd, err error) bool {
	ex := &fc.ex
	fc.close = true
	switch {
	case errors.Is(err, errBodyTooBig):
		return fc.local(http.StatusRequestEntityTooLarge, EndBodyTooLarge, "")
	case errors.Is(err, errBadChunk):
		ex.err = err
		return fc.local(http.StatusBadRequest, EndBadRequest, "")
	}
	ex.end = EndClientAborted
	return false
}
