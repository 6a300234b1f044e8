package cache

import (
	"math"
	"net/http"
	"strings"
)

// absent marks a delta-seconds directive that was not given (or was
// invalid, which RFC 9111 section 1.2.2 says to treat the same way).
const absent = -1

// maxDelta is the largest delta-seconds kept: 2^31 seconds, which RFC 9111
// section 1.2.2 says a larger value is read as.
const maxDelta = math.MaxInt32

// control is a parsed Cache-Control field (RFC 9111 section 5.2), of a
// request or a response. Durations are seconds, or absent.
type control struct {
	maxAge, sMaxAge, minFresh, maxStale int64
	staleWhileRevalidate, staleIfError  int64 // RFC 5861
	// surrogateMaxAge is Surrogate-Control's max-age (Edge Architecture
	// 1.0), which a reverse proxy's cache obeys before Cache-Control.
	surrogateMaxAge int64

	maxStaleAny     bool // max-stale without a value: any staleness
	noStore         bool
	noCache         bool // unqualified or with field names: both revalidate
	private         bool
	public          bool
	mustRevalidate  bool
	proxyRevalidate bool
	onlyIfCached    bool
	mustUnderstand  bool
	noTransform     bool
}

// parseControl reads every Cache-Control field line of h. A directive given
// twice with different values is conflicting: RFC 9111 section 4.2.1 says
// to take the most restrictive, which for durations is the smallest.
func parseControl(h http.Header) control {
	c := control{maxAge: absent, sMaxAge: absent, minFresh: absent, maxStale: absent,
		staleWhileRevalidate: absent, staleIfError: absent, surrogateMaxAge: absent}
	for _, line := range h["Cache-Control"] {
		parseControlLine(line, &c, "")
	}
	return c
}

// responseControl is a response's Cache-Control with its Surrogate-Control
// laid over it: sluice is the surrogate such a field is meant for, so its
// max-age decides freshness and its no-store forbids storing. The field
// is for surrogates only: it is not passed on to clients (see respond).
// Directives targeted at a device (max-age=60;name) apply if the device is
// me, the name in the Surrogate-Capability we send (see capability).
func responseControl(h http.Header, me string) control {
	c := parseControl(h)
	if lines, ok := h["Surrogate-Control"]; ok {
		sc := control{maxAge: absent, sMaxAge: absent, minFresh: absent, maxStale: absent,
			staleWhileRevalidate: absent, staleIfError: absent, surrogateMaxAge: absent}
		for _, line := range lines {
			parseControlLine(line, &sc, me)
		}
		// Its max-age lets a surrogate store what Cache-Control's
		// no-store keeps from browsers.
		c.noStore = sc.noStore || c.noStore && sc.maxAge == absent
		c.surrogateMaxAge = sc.maxAge
	}
	return c
}

// parseControlLine reads one field line: comma-separated directives, each a
// token with an optional token or quoted-string argument (RFC 9110 section
// 5.6). Commas inside a quoted string do not separate directives, so a
// quoted "max-age=0" inside another directive's argument is not read.
//
// A directive targeted at a device (Surrogate-Control's "max-age=5;dev")
// is read only if the device is me; Cache-Control's never are.
func parseControlLine(s string, c *control, me string) {
	for len(s) > 0 {
		var name, arg, target string
		var quoted, ok bool
		name, arg, target, quoted, s, ok = nextDirective(s)
		if !ok {
			return // garbled from here on: keep what came before
		}
		if name == "" || target != "" && (me == "" || target != me) {
			continue
		}
		c.set(strings.ToLower(name), arg, quoted)
	}
}

// set records one directive.
func (c *control) set(name, arg string, quoted bool) {
	switch name {
	case "max-age":
		c.maxAge = minDelta(c.maxAge, delta(arg))
	case "s-maxage":
		c.sMaxAge = minDelta(c.sMaxAge, delta(arg))
	case "min-fresh":
		c.minFresh = minDelta(c.minFresh, delta(arg))
	case "max-stale":
		if arg == "" && !quoted {
			c.maxStaleAny = true
		} else {
			c.maxStale = minDelta(c.maxStale, delta(arg))
		}
	case "stale-while-revalidate":
		c.staleWhileRevalidate = minDelta(c.staleWhileRevalidate, delta(arg))
	case "stale-if-error":
		c.staleIfError = minDelta(c.staleIfError, delta(arg))
	case "no-store":
		c.noStore = true
	case "no-cache":
		c.noCache = true
	case "private":
		c.private = true
	case "public":
		c.public = true
	case "must-revalidate":
		c.mustRevalidate = true
	case "proxy-revalidate":
		c.proxyRevalidate = true
	case "only-if-cached":
		c.onlyIfCached = true
	case "must-understand":
		c.mustUnderstand = true
	case "no-transform":
		c.noTransform = true
	}
}

// minDelta combines two values of one directive: an absent one yields to
// the other, else the smaller (more restrictive) wins.
func minDelta(old, v int64) int64 {
	switch {
	case v == absent:
		return old
	case old == absent:
		return v
	}
	return min(old, v)
}

// delta parses delta-seconds: digits only (RFC 9111 section 1.2.2). The
// quoted form is accepted too, as the section 5.2 note says recipients
// should. Anything else is invalid, which reads as absent; a value too
// large saturates at 2^31.
func delta(s string) int64 {
	if s == "" {
		return absent
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return absent
		}
		if n < maxDelta {
			n = n*10 + int64(c-'0')
		}
	}
	return min(n, maxDelta)
}

// nextDirective splits the first directive off s. It returns ok false if s
// is not a list of directives from here (a quoted string that never ends,
// or stray characters after an argument).
func nextDirective(s string) (name, arg, target string, quoted bool, rest string, ok bool) {
	s = trimOWS(s)
	i := 0
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	name, s = s[:i], s[i:]
	if len(s) > 0 && s[0] == '=' {
		s = s[1:]
		if len(s) > 0 && s[0] == '"' {
			arg, s, ok = quotedString(s)
			if !ok {
				return "", "", "", false, "", false
			}
			quoted = true
		} else {
			j := 0
			for j < len(s) && isTokenChar(s[j]) {
				j++
			}
			arg, s = s[:j], s[j:]
		}
	}
	s = trimOWS(s)
	if len(s) > 0 && s[0] == ';' {
		s = trimOWS(s[1:])
		j := 0
		for j < len(s) && isTokenChar(s[j]) {
			j++
		}
		target, s = s[:j], trimOWS(s[j:])
		if target == "" {
			target = ";" // a target we cannot read is not ours
		}
	}
	switch {
	case s == "":
		return name, arg, target, quoted, "", true
	case s[0] == ',':
		return name, arg, target, quoted, s[1:], true
	}
	// "max-age =5" or "max-age=5x": not a directive we can read; skip to
	// the next comma outside quotes and report nothing for this one.
	_, rest, ok = skipElement(s)
	return "", "", "", false, rest, ok
}

// skipElement skips to just past the next comma outside a quoted string.
func skipElement(s string) (skipped, rest string, ok bool) {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ',':
			return s[:i], s[i+1:], true
		case '"':
			_, after, ok := quotedString(s[i:])
			if !ok {
				return "", "", false
			}
			j := len(s) - len(after)
			skipped, rest, ok = skipElement(s[j:])
			return s[:j] + skipped, rest, ok
		}
	}
	return s, "", true
}

// quotedString reads a quoted-string at the start of s, undoing
// quoted-pairs.
func quotedString(s string) (val, rest string, ok bool) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), s[i+1:], true
		case '\\':
			if i+1 == len(s) {
				return "", "", false
			}
			i++
			b.WriteByte(s[i])
		default:
			b.WriteByte(c)
		}
	}
	return "", "", false
}

func trimOWS(s string) string { return strings.Trim(s, " \t") }

// isTokenChar reports whether c may appear in an RFC 9110 token.
func isTokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
