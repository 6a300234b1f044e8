package l4

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"
)

// BenchmarkLogEnd measures the per-connection log line, against a new
// connection's whole cost through the loop (about 60 µs of a core here).
func BenchmarkLogEnd(b *testing.B) {
	for _, h := range []struct {
		name string
		h    slog.Handler
	}{
		{"text", slog.NewTextHandler(io.Discard, nil)},
		{"json", slog.NewJSONHandler(io.Discard, nil)},
		{"disabled", slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError})},
	} {
		b.Run(h.name, func(b *testing.B) {
			s := &Server{Name: "pg", Logger: slog.New(h.h)}
			c := &Client{Addr: netip.MustParseAddrPort("10.1.2.3:51234")}
			b.ReportAllocs()
			for b.Loop() {
				s.logEnd(c, "10.0.0.3:5432", EndClientClosed, 64, 64, 1500*time.Microsecond, 0, nil)
			}
		})
	}
}
