package l7

import (
	"bytes"
	"unsafe"
)

// The fast path's request head parser. It reads a head in place, in the
// connection's buffer, and allocates nothing. It is deliberately narrow:
// it accepts the heads that browsers, load generators and HTTP libraries
// send (HTTP/1.1, origin-form targets, CRLF lines, one Host, at most one
// framing header) and answers headHandOff for anything else (obs-fold,
// bare LF, HTTP/1.0 or 2.0, absolute or asterisk form, Expect, h2c,
// duplicate or conflicting framing, odd bytes), so that net/http, which
// has well-trodden answers for each of those, takes the connection over
// with the bytes already read. Being stricter than net/http is safe; being
// laxer would be request smuggling, and the differential fuzz test checks
// that whatever this parser accepts net/http reads the same way.

// headStatus is what parseHead made of the bytes it was given.
type headStatus uint8

const (
	headNeedMore headStatus = iota // no blank line yet
	headOK                         // a head the fast path serves
	headHandOff                    // valid or not, net/http's to answer
)

// maxFields bounds the fields of a head the fast path serves; a head with
// more goes to net/http.
const maxFields = 64

// fieldKind marks the fields the proxy acts on.
type fieldKind uint8

const (
	fieldOther fieldKind = iota
	fieldHost
	fieldContentLength
	fieldTransferEncoding
	fieldConnection
	fieldUpgrade
	fieldRequestID
	fieldForwarding // X-Forwarded-For/-Proto/-Host, Forwarded: replaced
	fieldHopByHop   // Keep-Alive, Proxy-Connection, TE, Trailer, Proxy-Authenticate/-Authorization
	fieldExpect
	fieldHTTP2Settings
)

// field is one header field: slices of the connection's buffer.
type field struct {
	name, value []byte
	kind        fieldKind
}

// reqHead is a parsed request head. Its slices point into the buffer it
// was parsed from and are valid until the request ends.
type reqHead struct {
	method, target []byte
	path, query    []byte // target split at the first '?'; query without it
	host           []byte
	fields         [maxFields]field
	n              int   // fields used
	size           int   // bytes of the head, blank line included
	contentLength  int64 // -1: none
	chunked        bool
	close          bool // Connection: close
	upgrade        bool // Connection: upgrade with an Upgrade field
	connTokens     bool // Connection names other fields (hop-by-hop)
	conn           []byte
}

// parseHead parses the request head at the start of b.
func parseHead(b []byte, h *reqHead) headStatus {
	*h = reqHead{contentLength: -1}
	line, rest, st := nextLine(b)
	if st != headOK {
		return st
	}
	if st := h.requestLine(line); st != headOK {
		return st
	}
	hosts, lengths, encodings, upgrades := 0, 0, 0, 0
	for {
		line, rest, st = nextLine(rest)
		if st != headOK {
			return st
		}
		if len(line) == 0 {
			break
		}
		if h.n == maxFields {
			return headHandOff
		}
		f := &h.fields[h.n]
		if !splitField(line, f) {
			return headHandOff
		}
		h.n++
		switch f.kind = kindOf(f.name); f.kind {
		case fieldHost:
			hosts++
			h.host = f.value
		case fieldContentLength:
			lengths++
			n, ok := parseLength(f.value)
			if !ok {
				return headHandOff
			}
			h.contentLength = n
		case fieldTransferEncoding:
			encodings++
			if !equalFold(f.value, "chunked") {
				return headHandOff
			}
			h.chunked = true
		case fieldConnection:
			h.conn = f.value
			h.connection(f.value)
		case fieldUpgrade:
			upgrades++
		case fieldExpect, fieldHTTP2Settings:
			return headHandOff
		}
	}
	// RFC 9112 section 3.2: exactly one Host. Section 6.3: one framing.
	if hosts != 1 || !validHost(h.host) || lengths > 1 || encodings > 1 || lengths+encodings > 1 || upgrades > 1 {
		return headHandOff
	}
	if h.upgrade && (upgrades == 0 || h.upgradeIsH2C()) {
		return headHandOff
	}
	h.size = len(b) - len(rest)
	return headOK
}

// nextLine returns the CRLF-terminated line at the start of b (without
// its CRLF) and what follows. A bare LF hands the connection off.
func nextLine(b []byte) (line, rest []byte, st headStatus) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, nil, headNeedMore
	}
	if i == 0 || b[i-1] != '\r' {
		return nil, nil, headHandOff
	}
	return b[:i-1], b[i+1:], headOK
}

// requestLine parses "METHOD /target HTTP/1.1".
func (h *reqHead) requestLine(line []byte) headStatus {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || !isToken(line[:sp]) {
		return headHandOff
	}
	h.method, line = line[:sp], line[sp+1:]
	sp = bytes.IndexByte(line, ' ')
	if sp <= 0 || line[0] != '/' || string(line[sp+1:]) != "HTTP/1.1" {
		return headHandOff
	}
	h.target = line[:sp]
	for _, c := range h.target {
		if c <= ' ' || c >= 0x7f {
			return headHandOff
		}
	}
	h.path = h.target
	if q := bytes.IndexByte(h.target, '?'); q >= 0 {
		h.path, h.query = h.target[:q], h.target[q+1:]
	}
	if !validEscapes(h.path) {
		return headHandOff // net/http answers 400
	}
	return headOK
}

// splitField splits "Name: value" and trims the value's optional
// whitespace. A name with whitespace or odd bytes, a line starting with
// whitespace (obs-fold), or control bytes in the value are refused.
func splitField(line []byte, f *field) bool {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 || !isToken(line[:colon]) {
		return false
	}
	v := line[colon+1:]
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	for _, c := range v {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	f.name, f.value = line[:colon], v
	return true
}

// connection reads the Connection field's tokens.
func (h *reqHead) connection(v []byte) {
	for len(v) > 0 {
		var tok []byte
		tok, v = nextToken(v)
		switch {
		case len(tok) == 0:
		case equalFold(tok, "close"):
			h.close = true
		case equalFold(tok, "upgrade"):
			h.upgrade = true
		case equalFold(tok, "keep-alive"):
		default:
			h.connTokens = true
		}
	}
}

// nextToken returns the first comma-separated element of v, trimmed, and
// the rest.
func nextToken(v []byte) (tok, rest []byte) {
	i := bytes.IndexByte(v, ',')
	if i < 0 {
		tok, rest = v, nil
	} else {
		tok, rest = v[:i], v[i+1:]
	}
	return bytes.Trim(tok, " \t"), rest
}

// upgradeIsH2C reports whether the Upgrade field offers h2c: net/http
// answers that itself.
func (h *reqHead) upgradeIsH2C() bool {
	for i := range h.n {
		if h.fields[i].kind == fieldUpgrade {
			return bytes.Contains(bytes.ToLower(h.fields[i].value), []byte("h2c"))
		}
	}
	return false
}

// named reports whether field f is named in the Connection field, which
// makes it hop-by-hop (RFC 9110 section 7.6.1).
func (h *reqHead) named(f *field) bool {
	if !h.connTokens {
		return false
	}
	return namedIn(h.conn, f.name)
}

func namedIn(conn, name []byte) bool {
	for v := conn; len(v) > 0; {
		var tok []byte
		tok, v = nextToken(v)
		if bytes.EqualFold(tok, name) {
			return true
		}
	}
	return false
}

// header returns the value of the first field named name (canonical or
// not), and whether there is one.
func (h *reqHead) header(name string) ([]byte, bool) {
	for i := range h.n {
		if equalFold(h.fields[i].name, name) {
			return h.fields[i].value, true
		}
	}
	return nil, false
}

// kindOf classifies a field name without allocating.
func kindOf(name []byte) fieldKind {
	switch len(name) {
	case 2:
		if equalFold(name, "te") {
			return fieldHopByHop
		}
	case 4:
		if equalFold(name, "host") {
			return fieldHost
		}
	case 6:
		if equalFold(name, "expect") {
			return fieldExpect
		}
	case 7:
		if equalFold(name, "upgrade") {
			return fieldUpgrade
		}
		if equalFold(name, "trailer") {
			return fieldHopByHop
		}
	case 9:
		if equalFold(name, "forwarded") {
			return fieldForwarding
		}
	case 10:
		if equalFold(name, "connection") {
			return fieldConnection
		}
		if equalFold(name, "keep-alive") {
			return fieldHopByHop
		}
	case 12:
		if equalFold(name, "x-request-id") {
			return fieldRequestID
		}
	case 14:
		if equalFold(name, "content-length") {
			return fieldContentLength
		}
		if equalFold(name, "http2-settings") {
			return fieldHTTP2Settings
		}
	case 15:
		if equalFold(name, "x-forwarded-for") {
			return fieldForwarding
		}
	case 16:
		if equalFold(name, "x-forwarded-host") || equalFold(name, "proxy-connection") {
			return fieldHopByHopOrForwarding(name)
		}
	case 17:
		if equalFold(name, "x-forwarded-proto") {
			return fieldForwarding
		}
		if equalFold(name, "transfer-encoding") {
			return fieldTransferEncoding
		}
	case 18:
		if equalFold(name, "proxy-authenticate") {
			return fieldHopByHop
		}
	case 19:
		if equalFold(name, "proxy-authorization") {
			return fieldHopByHop
		}
	}
	return fieldOther
}

func fieldHopByHopOrForwarding(name []byte) fieldKind {
	if equalFold(name, "proxy-connection") {
		return fieldHopByHop
	}
	return fieldForwarding
}

// equalFold compares ASCII b with lower-case s, ignoring case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// parseLength parses a Content-Length: digits only, no sign, at most 18.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// tokenChars are RFC 9110's tchar.
var tokenChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenChars[c] {
			return false
		}
	}
	return true
}

// validHost accepts host names, IPv4 and bracketed IPv6 addresses with an
// optional port: a stricter set than net/http's, which gets the rest.
func validHost(h []byte) bool {
	if len(h) == 0 {
		return false
	}
	for _, c := range h {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_') {
			return false
		}
	}
	return true
}

// str views b as a string without copying. The string is valid while b's
// bytes are: for a head, until its request ends. Nothing that outlives the
// request may keep one (the log copies).
func str(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// validEscapes reports whether every % in p starts a %XX escape.
func validEscapes(p []byte) bool {
	for i := bytes.IndexByte(p, '%'); i >= 0; i = bytes.IndexByte(p, '%') {
		if i+2 >= len(p) {
			return false
		}
		if _, ok := hexDigit(p[i+1]); !ok {
			return false
		}
		if _, ok := hexDigit(p[i+2]); !ok {
			return false
		}
		p = p[i+3:]
	}
	return true
}
