package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// With [admin] on and the log at level error, the proxies' logger is off
// at Info, so no connection record is built (the log tap used to turn it
// on for every connection to count it); the metrics count all the same,
// from the proxies' own counters.
func TestAdminCountsWithoutLogRecords(t *testing.T) {
	addr, adm := freePort(t), freePort(t)
	s := startInProcessFile(t, fmt.Sprintf(`[log]
format = "json"
level = "error"
[admin]
bind = %q
[listeners.t]
bind = %q
pool = "p"
[pools.p]
[[pools.p.backends]]
address = %q
`, adm, addr, echoBackend(t)))
	s.in.mu.Lock()
	proxyLog := s.in.in.log
	s.in.mu.Unlock()
	if proxyLog.Enabled(context.Background(), slog.LevelInfo) {
		t.Error("the proxies' logger is on at Info with level = \"error\": a record is built for every connection")
	}
	const n = 3
	for range n {
		c, _, _ := dialLine(t, addr)
		c.Close()
	}
	api := adminClient{t: t, base: "http://" + adm}
	waitFor(t, 5*time.Second, "the connections to be counted", func() bool {
		return metric(api.get("/metrics", nil), "sluice_tcp_connections_total", `listener="t"`, `end="client_closed"`) == n
	})
	if strings.Contains(s.log.String(), `"msg":"connection"`) {
		t.Errorf("connection lines logged at level error:\n%s", s.log)
	}
}
