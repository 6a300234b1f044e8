package l7

import (
	"bytes"
	"errors"
	"fmt"
)

// A backend's response head, as the fast path reads it in the forwarding
// buffer. Stricter than net/http's transport in small ways (CRLF lines,
// no obs-fold): a backend that sends otherwise gets a 502.

const maxRespFields = 128

// errBadResponse is a response head the fast path cannot pass on.
var errBadResponse = errors.New("l7: malformed response from backend")

// respHead is a parsed response head.
type respHead struct {
	status        int
	line          []byte // the status line from the code on: "200 OK"
	fields        [maxRespFields]field
	n             int
	size          int
	contentLength int64 // -1: none
	chunked       bool
	close         bool // the backend closes after it (Connection: close, HTTP/1.0)
	connTokens    bool
	conn          []byte
}

// parseResponse parses the response head at the start of b: headNeedMore
// until it is whole.
func parseResponse(b []byte, r *respHead) (headStatus, error) {
	*r = respHead{contentLength: -1}
	line, rest, st := nextLine(b)
	if st == headNeedMore {
		return st, nil
	}
	if st != headOK || len(line) < 12 || line[8] != ' ' {
		return 0, fmt.Errorf("%w: status line %q", errBadResponse, clip(line))
	}
	switch string(line[:8]) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		r.close = true // unless it says keep-alive; we do not ask it to
	default:
		return 0, fmt.Errorf("%w: status line %q", errBadResponse, clip(line))
	}
	r.line = line[9:]
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: status line %q", errBadResponse, clip(line))
		}
		r.status = r.status*10 + int(c-'0')
	}
	if r.status < 100 || len(line) > 12 && line[12] != ' ' {
		return 0, fmt.Errorf("%w: status line %q", errBadResponse, clip(line))
	}
	lengths := 0
	for {
		line, rest, st = nextLine(rest)
		if st == headNeedMore {
			return st, nil
		}
		if st != headOK {
			return 0, fmt.Errorf("%w: a line without CRLF", errBadResponse)
		}
		if len(line) == 0 {
			break
		}
		if r.n == maxRespFields {
			return 0, fmt.Errorf("%w: more than %d fields", errBadResponse, maxRespFields)
		}
		f := &r.fields[r.n]
		if !splitField(line, f) {
			return 0, fmt.Errorf("%w: field %q", errBadResponse, clip(line))
		}
		r.n++
		switch f.kind = kindOf(f.name); f.kind {
		case fieldContentLength:
			n, ok := parseLength(f.value)
			if !ok || lengths > 0 && n != r.contentLength {
				return 0, fmt.Errorf("%w: Content-Length %q", errBadResponse, clip(f.value))
			}
			lengths++
			r.contentLength = n
		case fieldTransferEncoding:
			if !equalFold(f.value, "chunked") || r.chunked {
				return 0, fmt.Errorf("%w: Transfer-Encoding %q", errBadResponse, clip(f.value))
			}
			r.chunked = true
		case fieldConnection:
			r.conn = f.value
			for v := f.value; len(v) > 0; {
				var tok []byte
				tok, v = nextToken(v)
				switch {
				case equalFold(tok, "close"):
					r.close = true
				case equalFold(tok, "keep-alive"), equalFold(tok, "upgrade"), len(tok) == 0:
				default:
					r.connTokens = true
				}
			}
		}
	}
	if r.chunked {
		r.contentLength = -1 // RFC 9112 section 6.3: chunked wins
	}
	r.size = len(b) - len(rest)
	return headOK, nil
}

func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// respDrop reports whether response field f is not passed to the client:
// hop-by-hop fields (RFC 9110 section 7.6.1) and the request ID, which is
// ours. Upgrade and Connection stay on a 101.
func (r *respHead) drop(f *field) bool {
	switch f.kind {
	case fieldRequestID, fieldTransferEncoding:
		return true
	case fieldConnection, fieldUpgrade:
		return r.status != 101
	case fieldHopByHop:
		// Trailer announces the trailers of a chunked body that is
		// passed on as it is.
		return !equalFold(f.name, "trailer")
	case fieldContentLength:
		return r.chunked
	}
	return r.connTokens && namedIn(r.conn, f.name)
}

// bodyless reports whether a response to method has no body whatever its
// fields say (RFC 9112 section 6.3).
func bodyless(method []byte, status int) bool {
	return status < 200 || status == 204 || status == 304 || bytes.Equal(method, []byte("HEAD"))
}
