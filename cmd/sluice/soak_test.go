package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// soakSample is one look at the running sluice during the soak.
type soakSample struct {
	at              time.Duration
	pid             int
	fds, goroutines float64
	rss             float64 // bytes
}

// TestSoak runs sluice for $SOAK (make soak: 30m) under mixed load: new
// TCP connections (about 200/s), 20 long-lived checksummed streams, UDP
// exchanges from 10 clients, HTTP requests (about 100/s), a reload every
// tenth of the time and an upgrade every third. It prints the process's
// descriptors, goroutines and resident memory over time, and fails if
// they grow from the first half to the second (flat: within 20% and a
// small constant), or if any TCP connection or stream failed. Not run
// without SOAK: it is not part of the CI suite.
func TestSoak(t *testing.T) {
	total, err := time.ParseDuration(os.Getenv("SOAK"))
	if err != nil || total <= 0 {
		t.Skip("set SOAK to a duration (make soak runs SOAK=30m)")
	}
	a, b := nameBackend(t, "a"), nameBackend(t, "b")
	web := startWeb(t, "web")
	echo := udpEcho(t)
	addr, uaddr, haddr, adm := freePort(t), freePort(t), freePort(t), freePort(t)
	dir := t.TempDir()
	file := func(idle string) string {
		extra := fmt.Sprintf("pid_file = %q\n[admin]\nbind = %q\n", pidFileFor(dir), adm)
		return reloadConfig(addr, "least_conn", idle, extra, a, b) + fmt.Sprintf(`
[listeners.u]
bind = %q
protocol = "udp"
pool = "u"
[pools.u]
[[pools.u.backends]]
address = %q
[listeners.web]
bind = %q
protocol = "http"
pool = "web"
[pools.web]
[[pools.web.backends]]
address = %q
`, uaddr, echo, haddr, web)
	}
	l := startLineage(t, dir, file("10m"))
	cfgPath := mustArg(t, l)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var streams []*stream
	for range 20 {
		s := &stream{}
		streams = append(streams, s)
		wg.Go(func() { s.run(addr, stop) })
	}
	var tcp pacedLoad
	wg.Go(func() { paced(addr, 200, stop, &tcp) })
	var udpOK, udpLost, httpOK, httpFailed atomic.Int64
	for i := range 10 {
		wg.Go(func() { soakUDP(uaddr, i, stop, &udpOK, &udpLost) })
	}
	wg.Go(func() { soakHTTP("http://"+haddr+"/", stop, &httpOK, &httpFailed) })

	every := max(total/30, 5*time.Second)
	start := time.Now()
	nextReload, nextUpgrade := total/10, total/3
	var samples []soakSample
	t.Logf("%8s %7s %6s %10s %8s %12s %12s %12s", "time", "pid", "fds", "goroutines", "rss_MB", "tcp_ok/fail", "udp_ok/lost", "http_ok/fail")
	for tick := time.NewTicker(every); time.Since(start) < total; <-tick.C {
		el := time.Since(start)
		pid := l.pidOr0()
		switch {
		case el >= nextUpgrade:
			nextUpgrade += total / 3
			syscall.Kill(pid, syscall.SIGUSR2)
			pid = l.waitNew(pid)
		case el >= nextReload:
			nextReload += total / 10
			os.WriteFile(cfgPath, []byte(file(fmt.Sprintf("%dm", 5+len(samples)%5))), 0o644)
			syscall.Kill(pid, syscall.SIGHUP)
		}
		s := soakSample{at: el.Round(time.Second), pid: pid, fds: scrape(t, adm, "process_open_fds"),
			goroutines: scrape(t, adm, "go_goroutines"), rss: scrape(t, adm, "process_resident_memory_bytes")}
		samples = append(samples, s)
		t.Logf("%8v %7d %6.0f %10.0f %8.1f %12s %12s %12s", s.at, s.pid, s.fds, s.goroutines, s.rss/(1<<20),
			fmt.Sprintf("%d/%d", tcp.ok.Load(), tcp.refused.Load()+tcp.failed.Load()),
			fmt.Sprintf("%d/%d", udpOK.Load(), udpLost.Load()), fmt.Sprintf("%d/%d", httpOK.Load(), httpFailed.Load()))
	}
	close(stop)
	wg.Wait()
	for _, s := range streams {
		if s.err != nil || s.sent.Load() != s.got.Load() {
			t.Errorf("stream: sent %d, got %d: %v", s.sent.Load(), s.got.Load(), s.err)
		}
	}
	if n := tcp.refused.Load() + tcp.failed.Load(); n > 0 {
		t.Errorf("%d TCP connections refused or failed; first: %v", n, tcp.firstErr.Load())
	}
	flat(t, samples)
}

// flat fails t if the second half of samples reaches past the first
// half's highs by more than 20% and a constant.
func flat(t *testing.T, samples []soakSample) {
	t.Helper()
	if len(samples) < 4 {
		t.Errorf("%d samples: too few to tell", len(samples))
		return
	}
	half := len(samples) / 2
	high := func(ss []soakSample, f func(soakSample) float64) float64 {
		m := 0.0
		for _, s := range ss {
			m = max(m, f(s))
		}
		return m
	}
	for _, m := range []struct {
		name  string
		f     func(soakSample) float64
		slack float64
	}{
		{"fds", func(s soakSample) float64 { return s.fds }, 20},
		{"goroutines", func(s soakSample) float64 { return s.goroutines }, 20},
		{"rss", func(s soakSample) float64 { return s.rss }, 8 << 20},
	} {
		first, second := high(samples[:half], m.f), high(samples[half:], m.f)
		verdict := "flat"
		if second > first*1.2+m.slack {
			verdict = "GROWING"
			t.Errorf("%s grew: first half's high %.0f, second half's %.0f", m.name, first, second)
		}
		t.Logf("%s: first half's high %.0f, second half's %.0f: %s", m.name, first, second, verdict)
	}
}

// soakUDP sends a datagram every 50 ms and counts echoes and losses (an
// upgrade ends the old process's sessions: a reply in flight then is lost).
func soakUDP(addr string, i int, stop <-chan struct{}, ok, lost *atomic.Int64) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		lost.Add(1)
		return
	}
	defer c.Close()
	buf := make([]byte, 64)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		msg := fmt.Sprintf("%d-%d", i, n)
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(time.Second))
		for {
			m, err := c.Read(buf)
			if err != nil {
				lost.Add(1)
				break
			}
			if string(buf[:m]) == msg {
				ok.Add(1)
				break
			}
		}
	}
}

// soakHTTP makes about 100 requests a second on keep-alive connections.
func soakHTTP(url string, stop <-chan struct{}, ok, failed *atomic.Int64) {
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		resp, err := client.Get(url)
		if err != nil {
			failed.Add(1)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && strings.HasPrefix(string(b), "web") {
			ok.Add(1)
		} else {
			failed.Add(1)
		}
	}
}
