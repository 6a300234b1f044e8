// Package clienthello reads the server name (SNI) from a TLS ClientHello
// without consuming it, so that a connection can be routed by name and
// then passed on untouched (SNI passthrough).
//
//	name, err := clienthello.ServerName(peeked)
//	if errors.Is(err, clienthello.ErrIncomplete) { /* peek again later */ }
//
// The hello may be split across TCP segments and across TLS records (a
// post-quantum key share makes it about 2 KB; RFC 8446 5.1 lets a client
// fragment a handshake message over records): the reader reassembles it,
// up to MaxHelloBytes.
package clienthello

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// MaxHelloBytes bounds a ClientHello message: real ones, post-quantum key
// shares included, are under 2 KB; 16 KiB leaves room for many
// extensions while a client cannot make the proxy buffer more.
const MaxHelloBytes = 16 << 10

var (
	// ErrIncomplete says the bytes end before the ClientHello does.
	ErrIncomplete = errors.New("clienthello: incomplete")
	// ErrNotTLS says the bytes do not start with a TLS handshake record.
	ErrNotTLS = errors.New("clienthello: not a TLS handshake")
	// ErrMalformed is wrapped by every error about a hello that breaks
	// the format.
	ErrMalformed = errors.New("clienthello: malformed")
)

const (
	recordHeaderLen     = 5
	recordTypeHandshake = 22
	maxRecordLen        = 1<<14 + 256 // RFC 8446 5.1, with TLS 1.2's allowance
	typeClientHello     = 1
	extServerName       = 0
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// ServerName returns the host name in the ClientHello at the start of b,
// lower case, or "" if the hello has none. b is not modified.
func ServerName(b []byte) (string, error) {
	msg, err := handshakeMessage(b)
	if err != nil {
		return "", err
	}
	return serverName(msg)
}

// handshakeMessage reassembles the first handshake message from the
// records at the start of b and returns its body, which must be a
// ClientHello.
func handshakeMessage(b []byte) ([]byte, error) {
	var msg []byte // the handshake bytes so far: type, length, body
	want := -1     // the whole message's length, once known
	for {
		if len(b) < recordHeaderLen {
			if len(b) > 0 && b[0] != recordTypeHandshake {
				return nil, ErrNotTLS
			}
			return nil, ErrIncomplete
		}
		if b[0] != recordTypeHandshake {
			if msg == nil {
				return nil, ErrNotTLS
			}
			return nil, malformed("record of type %d inside the ClientHello", b[0])
		}
		if b[1] != 3 {
			return nil, ErrNotTLS // SSL 2 and anything else
		}
		n := int(b[3])<<8 | int(b[4])
		if n == 0 || n > maxRecordLen {
			return nil, malformed("record length %d", n)
		}
		if len(b) < recordHeaderLen+n {
			return nil, ErrIncomplete
		}
		frag := b[recordHeaderLen : recordHeaderLen+n]
		if msg == nil {
			msg = frag // one record, the usual case: no copy
		} else {
			// Clip: appending must copy, never write into b.
			msg = append(slices.Clip(msg), frag...)
		}
		b = b[recordHeaderLen+n:]
		if want < 0 && len(msg) >= 4 {
			if msg[0] != typeClientHello {
				return nil, malformed("handshake message of type %d, not a ClientHello", msg[0])
			}
			want = 4 + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
			if want > MaxHelloBytes {
				return nil, malformed("ClientHello of %d bytes, over %d", want, MaxHelloBytes)
			}
		}
		if want >= 0 && len(msg) >= want {
			return msg[4:want], nil
		}
	}
}

// reader walks a hello's fields; a read past the end sets bad.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) bytes(n int) []byte {
	if r.bad || n > len(r.b) {
		r.bad = true
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u8() int {
	b := r.bytes(1)
	if b == nil {
		return 0
	}
	return int(b[0])
}

func (r *reader) u16() int {
	b := r.bytes(2)
	if b == nil {
		return 0
	}
	return int(b[0])<<8 | int(b[1])
}

// vec reads a vector with a length prefix of lenBytes bytes.
func (r *reader) vec(lenBytes int) []byte {
	n := r.u8()
	if lenBytes == 2 {
		n = n<<8 | r.u8()
	}
	return r.bytes(n)
}

// serverName finds the server_name extension in a ClientHello body
// (RFC 8446 4.1.2, RFC 6066 3).
func serverName(body []byte) (string, error) {
	r := &reader{b: body}
	r.bytes(2 + 32) // legacy_version, random
	r.vec(1)        // legacy_session_id
	suites := r.vec(2)
	r.vec(1) // legacy_compression_methods
	if r.bad || len(suites)%2 != 0 {
		return "", malformed("truncated ClientHello")
	}
	if len(r.b) == 0 {
		return "", nil // no extensions (TLS 1.2 and older may omit them)
	}
	exts := &reader{b: r.vec(2)}
	if r.bad || len(r.b) != 0 {
		return "", malformed("extensions do not fill the ClientHello")
	}
	for len(exts.b) > 0 {
		typ := exts.u16()
		data := exts.vec(2)
		if exts.bad {
			return "", malformed("truncated extension")
		}
		if typ == extServerName {
			return hostName(data)
		}
	}
	return "", nil
}

// hostName reads a server_name extension's host_name entry.
func hostName(data []byte) (string, error) {
	r := &reader{b: data}
	list := &reader{b: r.vec(2)}
	if r.bad || len(r.b) != 0 {
		return "", malformed("server_name list")
	}
	for len(list.b) > 0 {
		typ := list.u8()
		name := list.vec(2)
		if list.bad {
			return "", malformed("server_name entry")
		}
		if typ != 0 { // only host_name is defined
			continue
		}
		if !validName(name) {
			return "", malformed("server name %q", name)
		}
		return strings.ToLower(strings.TrimSuffix(string(name), ".")), nil
	}
	return "", nil
}

// validName accepts the characters of DNS names (RFC 6066 3: a host
// name, ASCII, no IP literals is not enforced), at most 255 bytes: the
// name is logged and matched, so nothing else may pass.
func validName(b []byte) bool {
	if len(b) == 0 || len(b) > 255 {
		return false
	}
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}
