package admin

import (
	"context"
	"log/slog"
	"time"
)

// LogHandler returns a slog.Handler that counts the one line each TCP
// connection ("connection"), UDP session ("session") and HTTP request
// ("request") logs when it ends,
// then passes every record on to next as next's level allows. The proxies
// log those lines at Info; the handler asks for them even when next's
// level is higher, so the counters do not depend on the log level.
//
// Counting from the log lines makes the metrics agree with the logs by
// construction, and keeps the proxies' paths free of metrics code: a line
// costs a few map lookups on an immutable map and atomic adds, no lock.
func (m *Metrics) LogHandler(next slog.Handler) slog.Handler {
	return &tap{m: m, next: next}
}

type tap struct {
	m    *Metrics
	next slog.Handler
}

// Enabled asks for Info records, which carry the connection lines.
func (t *tap) Enabled(ctx context.Context, l slog.Level) bool {
	return l == slog.LevelInfo || t.next.Enabled(ctx, l)
}

// Handle counts r if it is a connection or session line, then passes it
// on if next wants its level.
func (t *tap) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelInfo {
		switch r.Message {
		case "connection":
			t.m.count(&r, kindTCP)
		case "session":
			t.m.count(&r, kindUDP)
		case "request":
			t.m.count(&r, kindHTTP)
		}
	}
	if !t.next.Enabled(ctx, r.Level) {
		return nil
	}
	return t.next.Handle(ctx, r)
}

func (t *tap) WithAttrs(as []slog.Attr) slog.Handler {
	return &tap{m: t.m, next: t.next.WithAttrs(as)}
}

func (t *tap) WithGroup(name string) slog.Handler {
	return &tap{m: t.m, next: t.next.WithGroup(name)}
}

// line is what a connection, session or request line says, as the README
// documents its keys.
type line struct {
	key          endKey
	in, out      int64
	retries      int64
	duration     time.Duration
	sawEnd, sawL bool
}

// count adds r's numbers to its counters. A record without a listener or
// an end is not one of the proxies' lines and is left alone.
func (m *Metrics) count(r *slog.Record, k kind) {
	var ln line
	ln.key.kind = k
	r.Attrs(ln.add)
	if !ln.sawEnd || !ln.sawL {
		return
	}
	c := m.counters(ln.key)
	c.ends.Add(1)
	c.in.Add(uint64(max(ln.in, 0)))
	c.out.Add(uint64(max(ln.out, 0)))
	c.retries.Add(uint64(max(ln.retries, 0)))
	c.duration.Observe(ln.duration.Seconds())
}

func (ln *line) add(a slog.Attr) bool {
	v := a.Value
	switch a.Key {
	case "listener":
		ln.key.listener, ln.sawL = v.String(), true
	case "backend":
		ln.key.backend = v.String()
	case "end":
		ln.key.end, ln.sawEnd = v.String(), true
	case "bytes_in":
		ln.in = intValue(v)
	case "bytes_out":
		ln.out = intValue(v)
	case "retries":
		ln.retries = intValue(v)
	case "route":
		ln.key.route = v.String()
	case "status":
		ln.key.status = intValue(v)
	case "duration":
		if v.Kind() == slog.KindDuration {
			ln.duration = v.Duration()
		}
	}
	return true
}

func intValue(v slog.Value) int64 {
	switch v.Kind() {
	case slog.KindInt64:
		return v.Int64()
	case slog.KindUint64:
		return int64(v.Uint64())
	}
	return 0
}
