package l7

import (
	"net/http"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"time"

	"sluice/l7/route"
)

// ServeHTTP routes one request and answers it or forwards it. It is the
// http.Server's handler; the access log line is written when it returns.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handlers.Add(1)
	defer s.handlers.Done()
	// One allocation for the request's record and its writer.
	rec := &recorder{w: w}
	ex := &rec.exchange
	rec.ex, ex.rec = ex, rec
	ex.start, ex.peer = time.Now(), peerOf(r)
	ex.client = s.realClient(ex.peer, r.Header)
	ex.id = requestID(r.Header.Get(requestIDHeader))
	s.Counters.started()
	defer s.finish(rec, r)
	if s.refuse(s.limit, rec, ex.client.Addr()) {
		return
	}
	if r.Method == http.MethodConnect {
		// A reverse proxy is no tunnel to anywhere a client names.
		s.local(rec, http.StatusMethodNotAllowed, EndMethodNotAllowed)
		return
	}
	if s.misdirected(r) {
		s.local(rec, http.StatusMisdirectedRequest, EndMisdirected)
		return
	}
	if max := orDefault(s.MaxURLBytes, DefaultMaxURLBytes); max > 0 && len(r.RequestURI) > max {
		s.local(rec, http.StatusRequestURITooLong, EndURITooLong)
		return
	}
	s.countRequest(rec, r)
	if s.acmeChallenge(rec, r) {
		return
	}
	s.route(rec, r)
}

// route finds r's route, applies its policy and carries out its end.
func (s *Server) route(rec *recorder, r *http.Request) {
	ex := rec.ex
	req := route.Request{
		Host:   route.CanonicalHost(r.Host),
		Path:   cleanPath(r.URL.Path),
		Method: r.Method,
		Header: r.Header,
		Client: ex.client.Addr(),
	}
	rt := s.table.Find(&req)
	if rt == nil {
		if s.Default == "" {
			s.local(rec, http.StatusNotFound, EndNotFound)
			return
		}
		ex.route = "default"
		ex.key = ex.client
		s.forward(rec, r, s.Default)
		return
	}
	ex.route = rt.Name
	switch rt.Check(&req) {
	case route.DenyClient:
		s.local(rec, http.StatusForbidden, EndDenied)
		return
	case route.DenyMethod:
		rec.Header().Set("Allow", strings.Join(rt.AllowMethods, ", "))
		s.local(rec, http.StatusMethodNotAllowed, EndMethodNotAllowed)
		return
	}
	if s.routeLim != nil && s.refuse(s.routeLim[rt], rec, ex.client.Addr()) {
		return
	}
	switch rt.Kind {
	case route.Redirect:
		ex.end = EndRedirect
		rec.Header().Set(requestIDHeader, ex.id)
		http.Redirect(rec, r, rt.RedirectTo(r.Host, r.URL.RequestURI()), rt.Status)
	case route.Respond:
		ex.end = EndResponded
		respond(rec, rt.Status, rt.ContentType, rt.Body)
	default:
		ex.key = pickKey(rt, r, ex.client)
		ex.rewrite = &rt.Rewrite
		ex.compress = rt.Compress
		s.useCache(ex, rt.Cache, r)
		s.forward(rec, r, rt.Pool)
	}
}

// forward hands r to the named upstream's reverse proxy.
func (s *Server) forward(rec *recorder, r *http.Request, upstream string) {
	p := s.proxies[upstream]
	if p == nil {
		// The configuration checks every pool a route names; this is
		// a Server built by hand with a missing upstream.
		s.local(rec, http.StatusServiceUnavailable, EndNoBackend)
		return
	}
	ex := rec.ex
	if s.MaxBodyBytes > 0 {
		if r.ContentLength > s.MaxBodyBytes {
			s.local(rec, http.StatusRequestEntityTooLarge, EndBodyTooLarge)
			return
		}
		// A chunked body is cut off as it streams; the transport's
		// error then says why (see fail).
		r.Body = http.MaxBytesReader(rec, r.Body, s.MaxBodyBytes)
	}
	ex.pool = p
	defer func() {
		if ex.backend != nil {
			ex.backend.Release()
		}
	}()
	p.rp.ServeHTTP(rec, withExchange(r, ex))
	forgetExchange(r)
}

// local answers a request ourselves with a small body naming the status.
func (s *Server) local(rec *recorder, status int, end End) {
	rec.ex.end = end
	respond(rec, status, "text/plain; charset=utf-8", strconv.Itoa(status)+" "+http.StatusText(status)+"\n")
}

// respond writes a whole response of ours. The request ID goes back to the
// client on every answer, ours here, the backend's in modifyResponse: set
// on both, the reverse proxy would send it twice.
func respond(w *recorder, status int, contentType, body string) {
	h := w.Header()
	h.Set(requestIDHeader, w.ex.id)
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write([]byte(body))
}

// peerOf returns the address of the connection's other end.
func peerOf(r *http.Request) netip.AddrPort {
	ap, _ := netip.ParseAddrPort(r.RemoteAddr)
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// cleanPath resolves . and .. segments as the backend will, so routes see
// the path that is served: /public/../admin is routed as /admin.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	// path.Clean drops a trailing slash, which prefix routes such as
	// "/api/" rely on.
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}
