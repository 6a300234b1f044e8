package l7

import (
	"net/http"
	"net/netip"

	"sluice/l7/route"
)

// pickKey returns what a request's backend is picked by: its client
// address, or, on a route that hashes a header or cookie present in the
// request, an address made from that value. The pool's Maglev table hashes
// addresses; a value mapped to an address the same way on every host picks
// the same backend on every host, as a client address does.
func pickKey(rt *route.Route, r *http.Request, client netip.AddrPort) netip.AddrPort {
	if rt == nil {
		return client
	}
	var v string
	switch {
	case rt.HashHeader != "":
		v = r.Header.Get(rt.HashHeader)
	case rt.HashCookie != "":
		if c, err := r.Cookie(rt.HashCookie); err == nil {
			v = c.Value
		}
	}
	if v == "" {
		return client
	}
	return valueAddr(v)
}

// valueAddr maps v to an IPv6 address with two FNV-1a hashes (different
// offsets), without allocating. The address is only hashed again, never
// dialed; fd00::/8 keeps it clear of IPv4-mapped ones, which are unmapped.
func valueAddr(v string) netip.AddrPort {
	const prime = 1099511628211
	h1, h2 := uint64(14695981039346656037), uint64(0x9e3779b97f4a7c15)
	for i := 0; i < len(v); i++ {
		h1 = (h1 ^ uint64(v[i])) * prime
		h2 = (h2 ^ uint64(v[i])) * prime
	}
	var b [16]byte
	for i := range 8 {
		b[i], b[8+i] = byte(h1>>(8*i)), byte(h2>>(8*i))
	}
	b[0] = 0xfd
	return netip.AddrPortFrom(netip.AddrFrom16(b), 0)
}
