package main

import (
	"bufio"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestParsePgbench(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		rate       float64
		ok, err    bool
	}{
		{"progress 15", "progress: 2.0 s, 31162.7 tps, lat 0.258 ms stddev 2.535, 0 failed", 31162.7, true, false},
		{"progress 14", "progress: 1.0 s, 294.7 tps, lat 13.701 ms stddev 10.890", 294.7, true, false},
		{"failed transactions", "progress: 3.0 s, 100.0 tps, lat 1.0 ms stddev 0.1, 4 failed", 0, false, true},
		{"error", "pgbench: error: connection to server at \"127.0.0.1\", port 5 failed: Connection refused", 0, false, true},
		{"aborted", "pgbench: error: client 3 aborted in command 1 (SQL) of script 0; perhaps the backend died", 0, false, true},
		{"no tps", "progress: 1.0 s, lat 1 ms", 0, false, true},
		{"summary", "tps = 30156.580015 (without initial connection time)", 0, false, false},
		{"banner", "pgbench (15.18 (Debian 15.18-0+deb12u1))", 0, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rate, ok, err := parsePgbench(tc.line)
			if rate != tc.rate || ok != tc.ok || (err != nil) != tc.err {
				t.Errorf("parsePgbench(%q) = %v, %v, %v; want %v, %v, error %v", tc.line, rate, ok, err, tc.rate, tc.ok, tc.err)
			}
		})
	}
}

func TestParseRedisBenchmark(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		rate       float64
		ok, err    bool
	}{
		{"progress", "GET: rps=111836.7 (overall: 111836.7) avg_msec=0.091 (overall: 0.091)", 111836.7, true, false},
		{"first line", "GET: rps=0.0 (overall: -nan) avg_msec=-nan (overall: -nan)", 0, true, false},
		{"nan rate", "GET: rps=-nan (overall: -nan) avg_msec=-nan (overall: -nan)", 0, false, false},
		{"reset", "Error: Connection reset by peer", 0, false, true},
		{"refused", "Could not connect to Redis at 127.0.0.1:1: Connection refused", 0, false, true},
		{"warning", "WARNING: Keepalive disabled. You probably need 'echo 1 > /proc/sys/net/ipv4/tcp_tw_reuse'", 0, false, false},
		{"bad number", "GET: rps=fast (overall: 1)", 0, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rate, ok, err := parseRedisBenchmark(tc.line)
			if rate != tc.rate && !(math.IsNaN(rate) && !tc.ok) || ok != tc.ok || (err != nil) != tc.err {
				t.Errorf("parseRedisBenchmark(%q) = %v, %v, %v; want %v, %v, error %v", tc.line, rate, ok, err, tc.rate, tc.ok, tc.err)
			}
		})
	}
}

// TestScanCRLines splits redis-benchmark's output as it comes: progress
// lines end in '\r', and a line overwritten with spaces is blank.
func TestScanCRLines(t *testing.T) {
	in := "\rGET: rps=0.0\r          \rGET: rps=5.0\r\nWARNING: x\nlast"
	sc := bufio.NewScanner(strings.NewReader(in))
	sc.Split(scanCRLines)
	var got []string
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			got = append(got, l)
		}
	}
	want := []string{"GET: rps=0.0", "GET: rps=5.0", "WARNING: x", "last"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("lines = %q, want %q", got, want)
	}
}

// TestClientWindow feeds made-up reports: the first one and those whose
// interval began in the warm-up are skipped, the window ends once it
// covers the duration, and the median of its reports is the rate.
func TestClientWindow(t *testing.T) {
	o := runOpts{warm: 500 * time.Millisecond, dur: time.Second}
	boom := errors.New("boom")
	for _, tc := range []struct {
		name  string
		every time.Duration
		rates []float64
		fail  map[int]error
		want  float64
		err   error
	}{
		// Reports at 250 and 500 ms are warm-up; 750..1500 ms the window.
		{"redis interval", 250 * time.Millisecond, []float64{0, 1, 10, 20, 30, 40, 99, 99}, nil, 25, nil},
		// The first report (1 s) is warm-up; the second fills the window.
		{"pgbench interval", time.Second, []float64{1, 7, 99}, nil, 7, nil},
		{"client error", 250 * time.Millisecond, []float64{0, 1, 2, 10, 20}, map[int]error{4: boom}, 0, boom},
		{"ends early", time.Second, []float64{1}, nil, 0, errExitedEarly},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reports := make(chan clientReport, len(tc.rates))
			start := time.Now()
			for i, r := range tc.rates {
				reports <- clientReport{rate: r, at: start.Add(time.Duration(i+1) * tc.every), err: tc.fail[i]}
			}
			close(reports)
			w, err := clientWindow(t.Context(), target{}, o, start, reports)
			if !errors.Is(err, tc.err) || err == nil && w.rate != tc.want {
				t.Errorf("clientWindow = %+v, %v; want rate %v, error %v", w, err, tc.want, tc.err)
			}
		})
	}
}

// TestRelayConfigs checks that every proxy's config carries each relay
// with its own listener and backend.
func TestRelayConfigs(t *testing.T) {
	p := proxyParams{listen: "127.0.0.1:1", backend: "127.0.0.1:2", cores: 1, dir: t.TempDir(),
		relays: []relay{{"postgres", "127.0.0.1:3", "127.0.0.1:4"}, {"redis", "127.0.0.1:5", "127.0.0.1:6"}}}
	for _, sys := range []*system{sluiceSystem, haproxySystem, nginxSystem} {
		cfg := sys.config(p)
		for _, want := range []string{"127.0.0.1:3", "127.0.0.1:4", "127.0.0.1:5", "127.0.0.1:6"} {
			if strings.Count(cfg, want) != 1 {
				t.Errorf("%s config has %q %d times, want once:\n%s", sys.name, want, strings.Count(cfg, want), cfg)
			}
		}
	}
}

// TestHTTPPeers runs each HTTP scenario briefly through HAProxy and nginx
// as the bench configures them, so that a config either peer refuses, or
// one that closes keep-alive connections, fails here rather than in a
// long run. A missing peer fails the test (make test-deps installs them).
func TestHTTPPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts HAProxy and nginx")
	}
	bins, err := ensurePeers(t.Logf, []*system{haproxySystem, nginxSystem})
	if err != nil {
		t.Fatal(err)
	}
	set := settings{reps: 1, warm: 100 * time.Millisecond, dur: 500 * time.Millisecond, cores: 1,
		tools: clientToolsOrFail(t)}
	e := &env{dir: t.TempDir(), bins: bins}
	be, err := startBackend()
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	bk := &backends{tcp: be}
	for _, sys := range []*system{haproxySystem, nginxSystem} {
		procs := map[*system]*proxyProc{}
		for _, sc := range scenarios {
			if sc.proto != "http" && sc.proto != "h2" {
				continue
			}
			t.Run(sc.key+"/"+sys.key, func(t *testing.T) {
				tg, err := ensureRunning(t.Context(), e, set, bk, sys, procs, map[string]string{})
				if err != nil {
					t.Fatal(err)
				}
				m, err := sc.run(t.Context(), tg, set)
				if err != nil {
					t.Fatal(err)
				}
				checkMetrics(t, sc, sys, m)
			})
		}
		for _, p := range procs {
			if err := p.stop(); err != nil {
				t.Error(err)
			}
		}
	}
}
