package l4

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// ErrNoBackend is returned (and logged) when a pool has no backend to try.
var ErrNoBackend = errors.New("l4: no backend available")

// noBackend returns ErrNoBackend with the pool's account of its backends,
// so that the log of a refused connection says why.
func noBackend(p Picker) error {
	if why := p.Unavailable(); why != "" {
		return fmt.Errorf("%w: %s", ErrNoBackend, why)
	}
	return ErrNoBackend
}

// logEnd writes the one log line of a connection. It builds nothing when
// the level is off, and its attributes live on the stack.
func (s *Server) logEnd(c *Client, backend string, e End, in, out int64, d time.Duration, retries int, err error) {
	log := s.logger()
	ctx := context.Background()
	if !log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	var buf [13]slog.Attr
	attrs := append(buf[:0],
		slog.String("listener", s.Name),
		slog.String("client", c.Addr.String()),
	)
	if c.Via.IsValid() {
		attrs = append(attrs, slog.String("via", c.Via.String()))
	}
	if len(c.UniqueID) > 0 {
		attrs = append(attrs, slog.String("unique_id", printable(c.UniqueID)))
	}
	if c.ServerName != "" {
		attrs = append(attrs, slog.String("sni", c.ServerName))
	}
	attrs = append(attrs,
		slog.String("backend", backend),
		slog.Int64("bytes_in", in),
		slog.Int64("bytes_out", out),
		slog.Duration("duration", d),
		slog.String("end", e.String()),
	)
	if retries > 0 {
		attrs = append(attrs, slog.Int("retries", retries))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	log.LogAttrs(ctx, slog.LevelInfo, "connection", attrs...)
}

// maxLoggedID bounds the unique ID logged: the PROXY protocol allows 128
// bytes, and the log is no place for more from a client.
const maxLoggedID = 128

// printable returns id, at most maxLoggedID bytes of it, for a log line:
// printable ASCII as it is and anything else (which a trusted proxy in
// front should not send, but might) as \xNN, so that it cannot forge or
// break log lines.
func printable(id []byte) string {
	cut := len(id) > maxLoggedID
	if cut {
		id = id[:maxLoggedID]
	}
	const hex = "0123456789abcdef"
	b := make([]byte, 0, len(id)+3)
	for _, c := range id {
		if c > ' ' && c < 0x7f && c != '\\' {
			b = append(b, c)
		} else {
			b = append(b, '\\', 'x', hex[c>>4], hex[c&15])
		}
	}
	if cut {
		b = append(b, "..."...)
	}
	return string(b)
}
