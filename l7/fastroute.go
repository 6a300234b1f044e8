package l7

import (
	"encoding/hex"
	"net/http"
	"net/netip"
	"strings"

	"sluice/l7/route"
)

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
	if s.ACME != nil && strings.HasPrefix(path, acmeChallengePath) && s.ACME.Handler(req.Host) != nil {
		fc.status = -1 // answered by net/http's path (acmeChallenge)
		return false
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
// compression (which works on net/http's writer) and caching (in the
// reverse proxy's transport, on net/http's requests and responses) are
// net/http's.
func fastRoute(rt *route.Route) bool { return !rt.Compress && rt.Cache == "" }

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
