package l7

import (
	"context"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"sluice/internal/pool"
)

// counting stands for a handler in front of the CLF one, such as the
// admin's metrics: it must still see every request record.
type counting struct {
	slog.Handler
	requests *atomic.Int64
}

func (c counting) Enabled(context.Context, slog.Level) bool { return true }

func (c counting) Handle(ctx context.Context, r slog.Record) error {
	err := c.Handler.Handle(ctx, r)
	if r.Message == "request" {
		c.requests.Add(1) // after the line is written: the test reads it then
	}
	return err
}

// TestCommonAndCombinedLogFormat checks each format's line, field by
// field, with a client's quotes, spaces and control bytes escaped so they
// cannot end a field or forge a line; that a handler in front still
// counts the records; and that a level above Info writes no lines.
func TestCommonAndCombinedLogFormat(t *testing.T) {
	for _, tc := range []struct {
		name     string
		combined bool
		level    slog.Level
		want     string // "" for no line
	}{
		{"common", false, slog.LevelInfo,
			`^127\.0\.0\.1 - al\\x20ice \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /x\?q=1 HTTP/1\.1" 200 \d+\n$`},
		{"combined", true, slog.LevelInfo,
			`^127\.0\.0\.1 - al\\x20ice \[[^]]+\] "GET /x\?q=1 HTTP/1\.1" 200 \d+ "http://ref/" "agent \\x22q\\x22\\x09x"\n$`},
		{"level error", true, slog.LevelError, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := startBackend(t, named("a"))
			var sink, other logSink
			var n atomic.Int64
			next := slog.NewJSONHandler(&other, &slog.HandlerOptions{Level: tc.level})
			log := slog.New(counting{NewCLFHandler(&sink, tc.combined, next), &n})
			px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: newPool(t, pool.Options{}, be.addr)}},
				Default: "p", Logger: log, LogRequestLine: true})
			req, err := http.NewRequest("GET", px.url+"/x?q=1", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.SetBasicAuth("al ice", "secret")
			req.Header.Set("Referer", "http://ref/")
			req.Header.Set("User-Agent", "agent \"q\"\tx")
			resp, err := client(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			eventually(t, 5*time.Second, "the request record", func() bool { return n.Load() == 1 })
			sink.mu.Lock()
			line := sink.buf.String()
			sink.mu.Unlock()
			if tc.want == "" && line != "" || tc.want != "" && !regexp.MustCompile(tc.want).MatchString(line) {
				t.Errorf("line %q\nwant match %q", line, tc.want)
			}
			if strings.Contains(other.buf.String(), `"msg":"request"`) {
				t.Errorf("the request was also logged as a record: %s", other.buf.String())
			}
		})
	}
}
