package l7

import (
	"crypto/rand"
	"encoding/hex"
	"net/http/httputil"
	"net/netip"
	"strings"

	"sluice/l7/route"
)

const requestIDHeader = "X-Request-Id"

// maxRequestIDLen bounds a kept X-Request-Id: it goes into every log line.
const maxRequestIDLen = 128

// requestID returns id if it is a sane request ID (1 to 128 characters
// of letters, digits and -._:+/=, which covers UUIDs, hex and base64), or
// a new random one. Anything else could smuggle spaces, quotes or control
// characters into logs and headers.
func requestID(id string) string {
	if len(id) > 0 && len(id) <= maxRequestIDLen && validID(id) {
		return id
	}
	var b [16]byte
	var h [32]byte
	rand.Read(b[:])
	hex.Encode(h[:], b[:])
	return string(h[:]) // one allocation, where EncodeToString makes two

}

func validID(id string) bool {
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._:+/=", c) >= 0) {
			return false
		}
	}
	return true
}

// trusted reports whether a is one of the trusted proxies.
func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// realClient returns the client a request is from. A trusted proxy's
// X-Forwarded-For is read right to left, skipping trusted hops: the first
// address that is not a trusted proxy is the client (the entries left of
// it are whatever that client claimed). From any other peer, the peer is
// the client.
func (s *Server) realClient(peer netip.AddrPort, h route.Header) netip.AddrPort {
	if len(s.TrustedProxies) == 0 || !s.trusted(peer.Addr()) {
		return peer
	}
	xff := h.Values("X-Forwarded-For")
	for i := len(xff) - 1; i >= 0; i-- {
		hops := strings.Split(xff[i], ",")
		for j := len(hops) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[j]))
			if err != nil {
				return peer // a garbled chain: trust nothing in it
			}
			if a = a.Unmap(); !s.trusted(a) {
				return netip.AddrPortFrom(a, 0)
			}
		}
	}
	return peer
}

// rewrite builds the outgoing request from the incoming one. The reverse
// proxy has already removed hop-by-hop headers and every X-Forwarded-* and
// Forwarded header: they are set again here, appended to only when the
// peer is a trusted proxy, so a client cannot forge its address.
func (s *Server) rewrite(pr *httputil.ProxyRequest) {
	ex := exchangeOf(pr.In.Context())
	out, in := pr.Out, pr.In
	out.URL.Scheme = ex.pool.scheme
	// The backend is picked per attempt (upstream.RoundTrip); the Host
	// header stays the client's, as virtual hosts on the backend need.
	out.Host = in.Host
	proto := "http"
	if in.TLS != nil {
		proto = "https"
	}
	trusted := len(s.TrustedProxies) > 0 && s.trusted(ex.peer.Addr())
	fwd, peer := forwardedElement(ex.peer.Addr(), in.Host, proto)
	xff, xfp, xfh := peer, proto, in.Host
	if trusted {
		if prior := strings.Join(in.Header.Values("X-Forwarded-For"), ", "); prior != "" {
			xff = prior + ", " + peer
		}
		if prior := strings.Join(in.Header.Values("Forwarded"), ", "); prior != "" {
			fwd = prior + ", " + fwd
		}
		if v := in.Header.Get("X-Forwarded-Proto"); v != "" {
			xfp = v
		}
		if v := in.Header.Get("X-Forwarded-Host"); v != "" {
			xfh = v
		}
	}
	// The headers' value slices share one array: Header.Set would make
	// one per header, per request. Keys are canonical already.
	h := out.Header
	vals := [...]string{xff, xfp, xfh, fwd, ex.id}
	v := vals[:]
	h["X-Forwarded-For"] = v[0:1:1]
	h["X-Forwarded-Proto"] = v[1:2:2]
	h["X-Forwarded-Host"] = v[2:3:3]
	h["Forwarded"] = v[3:4:4]
	if s.ClientCertHeader != "" {
		// Set from the handshake alone: a client's own is dropped.
		h.Del(s.ClientCertHeader)
		if sub := clientSubject(in); sub != "" {
			h.Set(s.ClientCertHeader, sub)
		}
	}
	if rw := ex.rewrite; rw != nil {
		out.URL.Path = rw.Path(out.URL.Path)
		if out.URL.RawPath != "" {
			// url.URL falls back to escaping Path if this is no
			// longer an encoding of it.
			out.URL.RawPath = rw.Path(out.URL.RawPath)
		}
		if rw.Host != "" {
			out.Host = rw.Host
		}
		// After the forwarding headers, so a route can override them
		// (X-Forwarded-Proto: https behind a TLS terminator).
		rw.Request(h)
	}
	h[requestIDHeader] = v[4:5:5]
}

// forwardedElement is one RFC 7239 element for a hop: for=, host=,
// proto=, and the peer's address as text, which is a substring of it (one
// allocation for both). Section 6: an IPv6 address is bracketed and, like
// any value with a colon, quoted.
func forwardedElement(peer netip.Addr, host, proto string) (elem, addr string) {
	var scratch [64]byte
	a := peer.AppendTo(scratch[:0])
	host = quoteForwarded(host)
	var b strings.Builder
	b.Grow(len(`for="[]";host=;proto=`) + len(a) + len(host) + len(proto))
	b.WriteString("for=")
	if peer.Is6() {
		b.WriteString(`"[`)
	}
	from := b.Len()
	b.Write(a)
	to := b.Len()
	if peer.Is6() {
		b.WriteString(`]"`)
	}
	if host != "" {
		b.WriteString(";host=")
		b.WriteString(host)
	}
	b.WriteString(";proto=")
	b.WriteString(proto)
	elem = b.String()
	return elem, elem[from:to]
}

// quoteForwarded quotes v unless it is an RFC 7230 token.
func quoteForwarded(v string) string {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
		}
	}
	return v
}
