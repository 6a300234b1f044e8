package l7

import (
	"net/http"
	"strconv"
	"sync"
)

// LogFormat says how the request log is written.
type LogFormat uint8

const (
	// LogRecord (the zero value) logs each request as a record through
	// Server.Logger, in the log's text or JSON format, with every field.
	LogRecord LogFormat = iota
	// LogCommon writes NCSA Common Log Format lines to Server.RequestLog:
	//	client - user [time] "request line" status bytes
	LogCommon
	// LogCombined is LogCommon followed by "referer" "user-agent", the
	// format of Apache's and nginx's default access logs.
	LogCombined
)

// clfTime is the Common Log Format's time: [10/Oct/2000:13:55:36 -0700].
const clfTime = "02/Jan/2006:15:04:05 -0700"

// clfBuffers hold the lines being formatted: one line costs no allocation
// once the pool is warm.
var clfBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// writeCLF writes r's line in the Common or Combined Log Format, in one
// Write so that lines of concurrent requests do not interleave.
func (s *Server) writeCLF(r *http.Request, ex *exchange, status int, bytes int64) {
	bp := clfBuffers.Get().(*[]byte)
	b := ex.client.Addr().AppendTo((*bp)[:0])
	b = append(b, " - "...)
	if user, _, ok := r.BasicAuth(); ok && user != "" {
		b = appendEscaped(b, user)
	} else {
		b = append(b, '-')
	}
	b = append(b, " ["...)
	b = ex.start.AppendFormat(b, clfTime)
	b = append(b, `] "`...)
	b = appendEscaped(b, r.Method)
	b = append(b, ' ')
	b = appendEscaped(b, r.RequestURI)
	b = append(b, ' ')
	b = appendEscaped(b, r.Proto)
	b = append(b, `" `...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, bytes, 10)
	if s.RequestLogFormat == LogCombined {
		b = appendQuoted(b, r.Referer())
		b = appendQuoted(b, r.UserAgent())
	}
	b = append(b, '\n')
	s.requestLog().Write(b)
	*bp = b
	clfBuffers.Put(bp)
}

// appendQuoted appends ` "v"`, or ` "-"` for an empty v.
func appendQuoted(b []byte, v string) []byte {
	b = append(b, ` "`...)
	if v == "" {
		b = append(b, '-')
	} else {
		b = appendEscaped(b, v)
	}
	return append(b, '"')
}

// appendEscaped appends v with quotes, backslashes, control and non-ASCII
// bytes written \xHH, as nginx does: a client's bytes must not be able to
// end a field or a line, or forge one.
func appendEscaped(b []byte, v string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			b = append(b, '\\', 'x', hex[c>>4], hex[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return b
}
