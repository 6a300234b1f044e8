package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the run if a test leaves goroutines behind: every load
// worker, backend connection and process waiter must be joined.
func TestMain(m *testing.M) {
	base := runtime.NumGoroutine()
	code := m.Run()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); code == 0 && n > base {
		buf := make([]byte, 1<<20)
		fmt.Fprintf(os.Stderr, "leaked %d goroutines:\n%s\n", n-base, buf[:runtime.Stack(buf, true)])
		code = 1
	}
	os.Exit(code)
}

// TestScenarios runs every scenario for about a second against direct and
// sluice (built from ./cmd/sluice), so that the harness keeps working as
// sluice changes. It checks the harness, not sluice's performance. The
// real clients run through sluice only: direct would exercise nothing
// more, and each pgbench run takes two of its one-second reports.
func TestScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the load for about 30 s")
	}
	if _, err := raiseFDLimit(); err != nil {
		t.Fatal(err)
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{dir: t.TempDir(), systems: []*system{directSystem}, bins: map[string]string{}}
	// BENCH_SLUICE names a prebuilt binary, for testing the harness while
	// the checkout's sluice does not build.
	bin, err := os.Getenv("BENCH_SLUICE"), error(nil)
	if bin == "" {
		bin, err = buildSluice(root, e.dir)
	}
	switch {
	case errors.Is(err, errNoSluice):
		t.Log("no cmd/sluice yet: testing direct only")
	case err != nil:
		t.Fatal(err)
	default:
		e.systems, e.bins["sluice"] = append(e.systems, sluiceSystem), bin
	}
	set := settings{reps: 1, warm: 200 * time.Millisecond, dur: 700 * time.Millisecond,
		idleConns: 500, settle: 200 * time.Millisecond, cores: 1, tools: clientToolsOrFail(t)}
	be, err := startBackend()
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	bk := &backends{tcp: be}
	defer bk.closeDBs()
	if bk.tls, err = startTLSBench(e.dir); err != nil {
		t.Fatal(err)
	}
	defer bk.tls.Close()
	if err := bk.startDBs(t.Context(), set.tools, scenarios); err != nil {
		t.Fatal(err)
	}
	ue, err := startUDPEcho(be.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer ue.Close()
	procs := map[*system]*proxyProc{}
	defer func() {
		for _, p := range procs {
			if err := p.stop(); err != nil {
				t.Error(err)
			}
		}
	}()
	ctx := t.Context()
	for _, sc := range scenarios {
		for _, sys := range e.systems {
			if !sys.speaks(sc.proto) || sc.needs != "" && sys == directSystem && len(e.systems) > 1 {
				continue
			}
			t.Run(sc.key+"/"+sys.key, func(t *testing.T) {
				tg, err := ensureRunning(ctx, e, set, bk, sys, procs, map[string]string{})
				if err != nil {
					t.Fatal(err)
				}
				m, err := sc.run(ctx, tg, set)
				if err != nil {
					t.Fatal(err)
				}
				checkMetrics(t, sc, sys, m)
			})
		}
	}
}

// clientToolsOrFail finds pgbench, redis-benchmark, their servers and
// h2load; a
// missing one fails the test (make test-deps installs them).
func clientToolsOrFail(t *testing.T) clientTools {
	t.Helper()
	pg, err := findPgTools()
	if err != nil {
		t.Fatalf("%v: run make test-deps", err)
	}
	srv, ok1 := lookBin("redis-server")
	cli, ok2 := lookBin("redis-benchmark")
	if !ok1 || !ok2 {
		t.Fatal("redis-server or redis-benchmark not found: run make test-deps")
	}
	h2, ok := lookBin("h2load")
	if !ok {
		t.Fatal("h2load not found: run make test-deps")
	}
	return clientTools{pg: pg, redis: srv, redisBench: cli, h2load: h2}
}

// checkMetrics wants every metric a system should have, and sane values
// where the harness itself guarantees them.
func checkMetrics(t *testing.T, sc *scenario, sys *system, m map[string]float64) {
	t.Helper()
	for _, mt := range sc.metrics {
		v, ok := m[mt.key]
		want := mt.overDirect == "" && mt.perCore == "" && (!mt.proxyOnly || sys != directSystem)
		if want && (!ok || math.IsNaN(v)) {
			t.Errorf("%s: no value (got %v)", mt.key, m)
		}
	}
	for _, k := range []string{"gbps", "rps", "cps", "tps", "p50", "p99", "dps"} {
		if v, ok := m[k]; ok && !(v > 0) {
			t.Errorf("%s = %v, want > 0", k, v)
		}
	}
	// Each held connection is two sockets in any proxy at least.
	if v, ok := m["fds"]; ok && v < 1.9 {
		t.Errorf("fds per connection = %.2f, want at least 2: connections were not all held", v)
	}
}

// TestReport renders a made-up run and checks the outputs' shape.
func TestReport(t *testing.T) {
	systems := []*system{directSystem, sluiceSystem, haproxySystem, nginxSystem}
	res := newResults(2, systems, scenarios)
	cpu := map[string]float64{"direct": math.NaN(), "sluice": 20, "haproxy": 40, "nginx": 50}
	for i, s := range systems {
		for rep := range 2 {
			res.add(s.key, "tcp1", rep, map[string]float64{"gbps": float64(10 + i + rep), "cpu": cpu[s.key]})
			res.add(s.key, "latency", rep, map[string]float64{"p50": 50, "p99": float64(100 + 10*i)})
			if s.speaks("udp") {
				res.add(s.key, "udp", rep, map[string]float64{"dps": float64(100000 / (i + 1)), "loss": float64(i)})
			}
		}
	}
	res.derive()
	r := &report{res: res, set: settings{reps: 2, dur: time.Second, cores: 1}, start: time.Now(),
		versions: map[string]string{"go": "go1.26"}, configs: map[string]string{"haproxy": "global\n"}}
	md := r.markdown("latest.svg")
	for _, want := range []string{
		"| scenario | metric | direct | sluice | HAProxy | nginx | sluice / best peer | sluice / direct |",
		"| TCP throughput, 1 stream, client to backend | throughput, Gbit/s ↑ | 10.50 (10.00-11.00) | 11.50 (11.00-12.00) |",
		"0.85 (nginx) | 1.10 |", // 11.5 / 13.5 and 11.5 / 10.5
		// 11 and 12 Gbit/s at 20% of a core; HAProxy's 12 and 13 at 40%.
		"throughput per proxy core-second, Gbit/core-s ↑ | - | 57.50 (55.00-60.00) | 31.25 (30.00-32.50) | 27.00 (26.00-28.00) | 1.84 (HAProxy) | - |",
		"p99 added over direct, µs ↓ | - | 10 | 20 | 30 | 0.50 (HAProxy) | - |",
		"TCP throughput, 1 stream, client to backend, at least the best peer's: **NOT met** (sluice 11.50, limit 13.50 = nginx)",
		"TCP throughput, 1 stream, client to backend, per proxy core-second at least the best peer's and 1.2x HAProxy's: met (sluice 57.50, limit 37.50 = 1.20x HAProxy)",
		"datagrams echoed, datagrams/s ↑ | 100000 | 50000 | - | 25000 | 2.00 (nginx) | 0.50 |",
		"UDP datagrams per second at full rate at least 2x nginx's: met",
		"UDP loss at full rate at most nginx's: met",
		"<summary>HAProxy (haproxy.cfg)</summary>",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if c := string(r.csv()); !strings.Contains(c, "tcp1,gbps,Gbit/s,false,sluice,11.5,11,12,2,11;12") {
		t.Errorf("csv lacks sluice's tcp1 row:\n%s", c)
	}
	dec := xml.NewDecoder(bytes.NewReader(r.chart()))
	for {
		if _, err := dec.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("chart is not well-formed XML: %v", err)
		}
	}
}

func TestSummarize(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		name string
		in   []float64
		want summary
	}{
		{"empty", nil, summary{}},
		{"all missing", []float64{nan, nan}, summary{}},
		{"odd", []float64{3, 1, 2}, summary{med: 2, lo: 1, hi: 3, n: 3}},
		{"even", []float64{4, 1, 2, 3}, summary{med: 2.5, lo: 1, hi: 4, n: 4}},
		{"skips missing", []float64{nan, 5, 7}, summary{med: 6, lo: 5, hi: 7, n: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := summarize(tc.in); got != tc.want {
				t.Errorf("summarize(%v) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	xs := make([]time.Duration, 100)
	for i := range xs {
		xs[i] = time.Duration(i + 1)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50}, {0.99, 99}, {1, 100}, {0, 1}} {
		if got := percentile(xs, tc.q); got != tc.want {
			t.Errorf("percentile(1..100, %v) = %v, want %v", tc.q, got, tc.want)
		}
	}
}

func TestPickAndRotate(t *testing.T) {
	got, err := pickSystems([]string{"nginx", "direct"})
	if err != nil || len(got) != 2 || got[0] != directSystem || got[1] != nginxSystem {
		t.Errorf("pickSystems(nginx,direct) = %v, %v; want direct, nginx in run order", got, err)
	}
	sc, err := pickScenarios([]string{"newconn", "postgres"})
	if err != nil || len(sc) != 3 || sc[0].key != "newconn" || sc[1].key != "pgbench" || sc[2].key != "pgbench-C" {
		t.Errorf("pickScenarios(newconn,postgres) = %v, %v; want newconn, pgbench, pgbench-C", sc, err)
	}
	if f, err := parseFlags([]string{"-only", "redis"}); err != nil || f.scenarios != "redis" {
		t.Errorf("parseFlags(-only redis) = %+v, %v; want scenarios redis", f, err)
	}
	if _, err := pickScenarios([]string{"tcp9"}); err == nil {
		t.Error("pickScenarios(tcp9) succeeded, want an error")
	}
	r := rotate(allSystems, 5)
	if r[0] != sluiceSystem || r[3] != directSystem {
		t.Errorf("rotate(all, 5) starts with %s, ends with %s; want sluice, direct", r[0].key, r[3].key)
	}
}

// TestWorkersStopOnError checks that one failing worker stops the others
// and that its error, not the cancellation, is returned.
func TestWorkersStopOnError(t *testing.T) {
	boom := errors.New("boom")
	err := workers(context.Background(), 4, func(ctx context.Context, i int) error {
		if i == 2 {
			return boom
		}
		<-ctx.Done()
		return ctx.Err()
	})
	if !errors.Is(err, boom) {
		t.Errorf("workers = %v, want boom", err)
	}
}
