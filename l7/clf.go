package l7

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// NewCLFHandler returns a slog.Handler that writes the "request" records
// of Servers as NCSA Common Log Format lines to w, with the Referer and
// User-Agent (Combined Log Format) if combined, and passes every other
// record to next. Levels are next's: at a level above Info, no lines.
// Servers whose lines it writes set LogRequestLine, which adds what a line
// shows beyond the usual record. A handler in front of it (metrics that
// count request records) still sees every record as it was.
//
//	10.1.2.3 - alice [10/Oct/2026:13:55:36 +0000] "GET /a?b=1 HTTP/1.1" 200 129 "https://r/" "curl/8"
func NewCLFHandler(w io.Writer, combined bool, next slog.Handler) slog.Handler {
	return &clfHandler{w: w, combined: combined, next: next}
}

type clfHandler struct {
	w        io.Writer
	combined bool
	next     slog.Handler
}

func (h *clfHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *clfHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &clfHandler{w: h.w, combined: h.combined, next: h.next.WithAttrs(as)}
}

func (h *clfHandler) WithGroup(name string) slog.Handler {
	return &clfHandler{w: h.w, combined: h.combined, next: h.next.WithGroup(name)}
}

// clfTime is the Common Log Format's time: [10/Oct/2000:13:55:36 -0700].
const clfTime = "02/Jan/2006:15:04:05 -0700"

// clfBuffers hold the lines being formatted: a line costs no allocation
// once the pool is warm.
var clfBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// clfLine is what a line shows, from a request record's attributes.
type clfLine struct {
	client, user, method, uri, proto, referer, agent string
	status, bytes                                    int64
	duration                                         time.Duration
}

// Handle writes r as one line, in one Write so that lines of concurrent
// requests do not interleave, if it is a request record.
func (h *clfHandler) Handle(ctx context.Context, r slog.Record) error {
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	if r.Message != "request" || r.Level != slog.LevelInfo {
		return h.next.Handle(ctx, r)
	}
	var ln clfLine
	r.Attrs(ln.add)
	bp := clfBuffers.Get().(*[]byte)
	b := ln.append((*bp)[:0], r.Time.Add(-ln.duration), h.combined)
	_, err := h.w.Write(b)
	*bp = b
	clfBuffers.Put(bp)
	return err
}

func (ln *clfLine) add(a slog.Attr) bool {
	v := a.Value
	switch a.Key {
	case "client":
		ln.client = v.String()
		if ap, err := netip.ParseAddrPort(ln.client); err == nil {
			ln.client = ap.Addr().String() // CLF's host has no port
		}
	case "user":
		ln.user = v.String()
	case "method":
		ln.method = v.String()
	case "uri":
		ln.uri = v.String()
	case "proto":
		ln.proto = v.String()
	case "referer":
		ln.referer = v.String()
	case "user_agent":
		ln.agent = v.String()
	case "status":
		ln.status = v.Int64()
	case "bytes_out":
		ln.bytes = v.Int64()
	case "duration":
		ln.duration = v.Duration()
	}
	return true
}

func (ln *clfLine) append(b []byte, start time.Time, combined bool) []byte {
	b = append(b, ln.client...)
	b = append(b, " - "...)
	if ln.user == "" {
		b = append(b, '-')
	} else {
		b = appendEscaped(b, ln.user, ' ') // the one unquoted free-text field
	}
	b = append(b, " ["...)
	b = start.AppendFormat(b, clfTime)
	b = append(b, `] "`...)
	b = appendEscaped(b, ln.method, '"')
	b = append(b, ' ')
	b = appendEscaped(b, ln.uri, '"')
	b = append(b, ' ')
	b = appendEscaped(b, ln.proto, '"')
	b = append(b, `" `...)
	b = strconv.AppendInt(b, ln.status, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, ln.bytes, 10)
	if combined {
		b = append(b, ` "`...)
		b = appendField(b, ln.referer)
		b = append(b, `" "`...)
		b = appendField(b, ln.agent)
		b = append(b, '"')
	}
	return append(b, '\n')
}

// appendField appends v escaped, or "-" for an empty v.
func appendField(b []byte, v string) []byte {
	if v == "" {
		return append(b, '-')
	}
	return appendEscaped(b, v, '"')
}

// appendEscaped appends v with quotes, backslashes, control and non-ASCII
// bytes, and also also, written \xHH, as nginx does: a client's bytes must
// not be able to end a field or a line, or forge one.
func appendEscaped(b []byte, v string, also byte) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == also {
			b = append(b, '\\', 'x', hex[c>>4], hex[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return b
}
