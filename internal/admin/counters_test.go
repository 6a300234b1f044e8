package admin

import (
	"context"
	"io"
	"net"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"sluice/internal/listen"
	"sluice/internal/pool"
	"sluice/internal/testutil"
	"sluice/l4"
)

// echoBackend is a loopback TCP server that echoes until the test ends.
func echoBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// proxyOnce serves s on loopback for one connection that sends "hi" and
// reads it back, and returns once s has counted its end. s is shut down
// when the test ends.
func proxyOnce(t *testing.T, s *l4.Server) {
	t.Helper()
	c := proxyHeld(t, s)
	c.Close()
	testutil.Eventually(t, 5*time.Second, "the connection to end", func() bool { return s.Counters.Live() == 0 })
}

// proxyHeld serves s on loopback and returns one connection through it
// that has sent "hi" and read it back. s is shut down when the test ends.
func proxyHeld(t *testing.T, s *l4.Server) net.Conn {
	t.Helper()
	lns, err := listen.TCP(context.Background(), netip.MustParseAddrPort("127.0.0.1:0"), 1)
	if err != nil {
		t.Fatal(err)
	}
	addr := lns[0].Addr().String()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(lns)
	}()
	t.Cleanup(func() {
		s.Close()
		<-done
	})
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("hi"))
	if _, err := io.ReadFull(c, make([]byte, 2)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A TCP connection's end shows in /metrics from the l4 counters: the
// series the log lines used to give, and the live gauges and histograms.
func TestTCPCountersMetrics(t *testing.T) {
	be := echoBackend(t)
	_, m, ps := testServer(t, "", pool.RoundRobin, be)
	proxyOnce(t, &l4.Server{Name: "l1", Pool: ps[0].Pool, Counters: m.TCPCounters("l1")})
	body := scrape(t, m)
	for _, want := range []string{
		`sluice_tcp_connections_total{backend="` + be + `",end="client_closed",listener="l1",pool="one"} 1`,
		`sluice_tcp_received_bytes_total{backend="` + be + `",listener="l1",pool="one"} 2`,
		`sluice_tcp_sent_bytes_total{backend="` + be + `",listener="l1",pool="one"} 2`,
		`sluice_tcp_connection_duration_seconds_count{listener="l1"} 1`,
		`sluice_tcp_connect_duration_seconds_count{listener="l1"} 1`,
		`sluice_tcp_connections_current{listener="l1"} 0`,
		`sluice_tcp_backend_connections_current{backend="` + be + `",listener="l1",pool="one"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %s in:\n%s", want, body)
		}
	}
	if m.TCPCounters("l1") != m.TCPCounters("l1") {
		t.Error("two counters for one listener")
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
