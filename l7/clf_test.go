package l7

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"sluice/internal/pool"
)

// TestCommonAndCombinedLogFormat checks each format's line, field by
// field, with a client's quotes and control bytes escaped so they cannot
// end a field or forge a line.
func TestCommonAndCombinedLogFormat(t *testing.T) {
	for _, tc := range []struct {
		name   string
		format LogFormat
		want   string
	}{
		{"common", LogCommon,
			`^127\.0\.0\.1 - alice \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /x\?q=1 HTTP/1\.1" 200 \d+\n$`},
		{"combined", LogCombined,
			`^127\.0\.0\.1 - alice \[[^]]+\] "GET /x\?q=1 HTTP/1\.1" 200 \d+ "http://ref/" "agent \\x22q\\x22\\x09x"\n$`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := startBackend(t, named("a"))
			var sink logSink
			px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: newPool(t, pool.Options{}, be.addr)}},
				Default: "p", RequestLogFormat: tc.format, RequestLog: &sink})
			req, err := http.NewRequest("GET", px.url+"/x?q=1", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.SetBasicAuth("alice", "secret")
			req.Header.Set("Referer", "http://ref/")
			req.Header.Set("User-Agent", "agent \"q\"\tx")
			resp, err := client(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			var line string
			eventually(t, 5*time.Second, "the request's line", func() bool {
				sink.mu.Lock()
				defer sink.mu.Unlock()
				line = sink.buf.String()
				return strings.HasSuffix(line, "\n")
			})
			if !regexp.MustCompile(tc.want).MatchString(line) {
				t.Errorf("line %q\nwant match %s", line, tc.want)
			}
			if px.log.buf.Len() != 0 {
				t.Errorf("the request was also logged as a record: %s", px.log.buf.String())
			}
		})
	}
}
