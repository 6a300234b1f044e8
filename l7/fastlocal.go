package l7

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"sluice/l7/route"
)

// local answers with a small body naming the status, as Server.local.
func (fc *fastConn) local(status int, end End, extra string) bool {
	fc.ex.end = end
	text := http.StatusText(status)
	return fc.respond(status, "text/plain; charset=utf-8", strconv.Itoa(status)+" "+text+"\n", extra)
}

// redirect answers a redirect route as http.Redirect does.
func (fc *fastConn) redirect(rt *route.Route) bool {
	fc.ex.end = EndRedirect
	h := &fc.h
	uri := str(h.target)
	to := rt.RedirectTo(str(h.host), uri)
	body, ctype := "", ""
	if m := str(h.method); m == http.MethodGet || m == http.MethodHead {
		ctype = "text/html; charset=utf-8"
		body = "<a href=\"" + htmlEscape(to) + "\">" + http.StatusText(rt.Status) + "</a>.\n\n"
	}
	return fc.respond(rt.Status, ctype, body, "Location: "+headerSafe(to)+"\r\n")
}

// respond writes a whole response of ours; extra is more header lines.
func (fc *fastConn) respond(status int, ctype, body, extra string) bool {
	fc.status = status
	b := fc.scratch()
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	b = append(b, "\r\n"...)
	if ctype != "" {
		b = append(b, "Content-Type: "...)
		b = append(b, ctype...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\nX-Request-Id: "...)
	b = append(b, fc.ex.id...)
	b = append(b, "\r\n"...)
	b = append(b, extra...)
	b = fc.date.append(b)
	if fc.close || fc.h.contentLength > 0 || fc.h.chunked {
		// A body we did not read ends the connection: its bytes
		// are not the next request.
		fc.close = true
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "\r\n"...)
	if str(fc.h.method) != http.MethodHead {
		b = append(b, body...)
	}
	n, err := fc.c.Write(b)
	fc.out = int64(max(0, n-(len(b)-len(body))))
	fc.putScratch(b)
	if fc.h.upgrade {
		fc.close = true
	}
	if err != nil {
		return false
	}
	fc.consume(fc.h.size)
	return true
}

// consume marks n bytes of the buffer as answered.
func (fc *fastConn) consume(n int) {
	fc.start += n
	if fc.start >= fc.end {
		fc.start, fc.end = 0, 0
	}
}

// scratch returns the write buffer of the forwarding buffers, which a
// local answer borrows.
func (fc *fastConn) scratch() []byte {
	if fc.bufs == nil {
		fc.bufs = fastBufPool.Get().(*fastBufs)
	}
	return fc.bufs.wr[:0]
}

func (fc *fastConn) putScratch(b []byte) {
	if fc.bufs != nil {
		if cap(b) <= 64<<10 {
			fc.bufs.wr = b[:0]
		}
		fastBufPool.Put(fc.bufs)
		fc.bufs = nil
	}
}

// count adds the request to the listener's Counters, as Server.count.
func (fc *fastConn) count() {
	c := fc.s.Counters
	if c == nil {
		return
	}
	ex := &fc.ex
	k := RequestKey{Route: ex.route, Status: loggedStatus(fc.status, ex.end), End: ex.end}
	if ex.backend != nil {
		k.Backend = ex.backend.Addr
	}
	c.ended(k, fc.bytesIn, fc.out, ex.retries, time.Since(ex.start))
}

// logRequest writes the request's log line.
func (fc *fastConn) logRequest(path string) {
	s := fc.s
	if !s.logger().Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	h := &fc.h
	// The head's bytes are reused by the next request: the line gets
	// copies, in one allocation.
	all := string(h.method) + string(h.host) + path + fc.ex.id + string(h.target)
	m, rest := cut(all, len(h.method))
	host, rest := cut(rest, len(h.host))
	p, rest := cut(rest, len(path))
	id, uri := cut(rest, len(fc.ex.id))
	fc.ex.id = id
	e := logEntry{method: m, host: host, path: p, proto: "HTTP/1.1", status: loggedStatus(fc.status, fc.ex.end),
		bytesIn: fc.bytesIn, bytesOut: fc.out}
	if s.LogRequestLine {
		e.uri = uri
		if v, ok := h.header("referer"); ok {
			e.referer = string(v)
		}
		if v, ok := h.header("user-agent"); ok {
			e.agent = string(v)
		}
		if v, ok := h.header("authorization"); ok {
			r := http.Request{Header: http.Header{"Authorization": {string(v)}}}
			e.user, _, _ = r.BasicAuth()
		}
	}
	s.logExchange(&fc.ex, &e)
}

func cut(s string, n int) (string, string) { return s[:n], s[n:] }

// htmlEscape escapes a URL for an href, as http.Redirect does.
func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}

// headerSafe drops bytes a header value may not hold.
func headerSafe(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f {
			return dropControls(s)
		}
	}
	return s
}

func dropControls(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

// dateCache formats the Date header once a second.
type dateCache struct {
	sec  int64
	line []byte
}

func (d *dateCache) append(b []byte) []byte {
	now := time.Now()
	if now.Unix() != d.sec || d.line == nil {
		d.sec = now.Unix()
		d.line = append(d.line[:0], "Date: "...)
		d.line = now.UTC().AppendFormat(d.line, http.TimeFormat)
		d.line = append(d.line, "\r\n"...)
	}
	return append(b, d.line...)
}

var errClientGone = errors.New("l7: client closed the connection")
