package admin

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// TestLogHandlerCounts feeds log lines shaped as the proxies write them
// and checks what each adds, and that every record still reaches the
// next handler as its level allows.
func TestLogHandlerCounts(t *testing.T) {
	tcp := func(backend, end string, in, out int64, retries int) []slog.Attr {
		as := []slog.Attr{slog.String("listener", "pg"), slog.String("client", "10.0.0.1:1"), slog.String("backend", backend),
			slog.Int64("bytes_in", in), slog.Int64("bytes_out", out), slog.Duration("duration", 2*time.Second), slog.String("end", end)}
		if retries > 0 {
			as = append(as, slog.Int("retries", retries))
		}
		return as
	}
	cases := []struct {
		name  string
		level slog.Level
		msg   string
		attrs []slog.Attr
		want  string // the series it adds 1 to, "" for none
	}{
		{"tcp", slog.LevelInfo, "connection", tcp("10.0.0.3:5432", "client_closed", 10, 20, 0),
			`sluice_tcp_connections_total{backend="10.0.0.3:5432",end="client_closed",listener="pg",pool="db"} 1`},
		{"tcp retries", slog.LevelInfo, "connection", tcp("10.0.0.4:5432", "backend_reset", 1, 2, 2),
			`sluice_tcp_retries_total{backend="10.0.0.4:5432",listener="pg",pool="db"} 2`},
		{"no backend", slog.LevelInfo, "connection", tcp("", "no_backend", 0, 0, 0),
			`sluice_tcp_connections_total{backend="",end="no_backend",listener="pg",pool="db"} 1`},
		{"udp", slog.LevelInfo, "session", []slog.Attr{slog.String("listener", "dns"), slog.String("backend", "10.0.0.5:53"),
			slog.Int64("datagrams_in", 1), slog.Int64("bytes_in", 40), slog.Int64("datagrams_out", 1), slog.Int64("bytes_out", 56),
			slog.Duration("duration", time.Millisecond), slog.String("end", "responses")},
			`sluice_udp_sessions_total{backend="10.0.0.5:53",end="responses",listener="dns",pool="dns"} 1`},
		{"http", slog.LevelInfo, "request", []slog.Attr{slog.String("listener", "web"), slog.String("method", "GET"),
			slog.Int("status", 503), slog.Int64("bytes_in", 0), slog.Int64("bytes_out", 19), slog.Duration("duration", time.Millisecond),
			slog.String("route", "api"), slog.String("backend", "10.0.0.7:80"), slog.Int("retries", 1), slog.String("end", "backend_status")},
			`sluice_http_requests_total{backend="10.0.0.7:80",code="503",end="backend_status",listener="web",pool="apipool",route="api"} 1`},
		{"other message", slog.LevelInfo, "listening", []slog.Attr{slog.String("listener", "pg"), slog.String("end", "x")}, ""},
		{"warning", slog.LevelWarn, "connection", tcp("10.0.0.3:5432", "client_closed", 1, 1, 0), ""},
		{"no end", slog.LevelInfo, "connection", []slog.Attr{slog.String("listener", "pg")}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			// The next handler wants warnings only: the lines are counted
			// all the same.
			next := slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn})
			m := NewMetrics(PoolNames{Listener: map[string]string{"pg": "db", "dns": "dns"},
				Route: map[[2]string]string{{"web", "api"}: "apipool"}}, "test")
			log := slog.New(m.LogHandler(next))
			log.LogAttrs(context.Background(), c.level, c.msg, c.attrs...)
			body := scrape(t, m)
			if c.want != "" && !strings.Contains(body, c.want) {
				t.Errorf("no %s in:\n%s", c.want, body)
			}
			if c.want == "" && (strings.Contains(body, "sluice_tcp_connections_total{") || strings.Contains(body, "sluice_udp_sessions_total{") ||
				strings.Contains(body, "sluice_http_requests_total{")) {
				t.Errorf("counted:\n%s", body)
			}
			if passed := out.Len() > 0; passed != (c.level >= slog.LevelWarn) {
				t.Errorf("next handler got %q", out.String())
			}
		})
	}
}

// TestLogHandlerConcurrent logs from many goroutines while scraping: the
// counts add up, and -race finds no data race.
func TestLogHandlerConcurrent(t *testing.T) {
	m := NewMetrics(PoolNames{Listener: map[string]string{"pg": "db"}}, "test")
	log := slog.New(m.LogHandler(slog.DiscardHandler))
	const workers, lines = 8, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			backend := []string{"10.0.0.1:1", "10.0.0.2:1"}[w%2]
			for range lines {
				log.LogAttrs(context.Background(), slog.LevelInfo, "connection", slog.String("listener", "pg"),
					slog.String("backend", backend), slog.Int64("bytes_in", 3), slog.String("end", "client_closed"))
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			scrape(t, m)
		}
	})
	wg.Wait()
	body := scrape(t, m)
	for _, want := range []string{
		`sluice_tcp_connections_total{backend="10.0.0.1:1",end="client_closed",listener="pg",pool="db"} 2000`,
		`sluice_tcp_received_bytes_total{backend="10.0.0.2:1",listener="pg",pool="db"} 6000`,
		`sluice_tcp_connection_duration_seconds_count{listener="pg"} 4000`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %s in:\n%s", want, body)
		}
	}
}

// BenchmarkLogHandler measures what counting adds to a connection's log
// line, with the line itself discarded.
func BenchmarkLogHandler(b *testing.B) {
	m := NewMetrics(PoolNames{Listener: map[string]string{"pg": "db"}}, "test")
	log := slog.New(m.LogHandler(slog.DiscardHandler))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		log.LogAttrs(ctx, slog.LevelInfo, "connection", slog.String("listener", "pg"), slog.String("client", "10.0.0.9:4000"),
			slog.String("backend", "10.0.0.1:5432"), slog.Int64("bytes_in", 100), slog.Int64("bytes_out", 200),
			slog.Duration("duration", time.Second), slog.String("end", "client_closed"))
	}
}

// scrape returns what /metrics would serve.
func scrape(t testing.TB, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(m.Registry(), promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// BenchmarkLogLineAlone is BenchmarkLogHandler's line without the
// counting: the difference is what metrics cost per connection.
func BenchmarkLogLineAlone(b *testing.B) {
	log := slog.New(enabledDiscard{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		log.LogAttrs(ctx, slog.LevelInfo, "connection", slog.String("listener", "pg"), slog.String("client", "10.0.0.9:4000"),
			slog.String("backend", "10.0.0.1:5432"), slog.Int64("bytes_in", 100), slog.Int64("bytes_out", 200),
			slog.Duration("duration", time.Second), slog.String("end", "client_closed"))
	}
}

// enabledDiscard takes every record and drops it.
type enabledDiscard struct{ slog.Handler }

func (enabledDiscard) Enabled(context.Context, slog.Level) bool  { return true }
func (enabledDiscard) Handle(context.Context, slog.Record) error { return nil }
