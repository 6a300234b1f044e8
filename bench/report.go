package main

import (
	"encoding/csv"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// report renders a run's results as Markdown, CSV and SVG.
type report struct {
	res      *results
	set      settings
	pinned   bool
	nice     int
	others   float64 // CPUs kept busy by other processes during the run
	args     []string
	start    time.Time
	versions map[string]string
	configs  map[string]string // system key -> config text
}

// write saves the dated and latest copies of every output under dir and
// prints the Markdown table on stdout.
func (r *report) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("writing results: %w", err)
	}
	stamp := r.start.UTC().Format("2006-01-02-1504")
	svg := r.chart()
	md := r.markdown(stamp + ".svg")
	files := map[string][]byte{
		stamp + ".md": []byte(md), stamp + ".csv": r.csv(), stamp + ".svg": svg,
		"latest.md": []byte(r.markdown("latest.svg")), "latest.csv": r.csv(), "latest.svg": svg,
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return fmt.Errorf("writing results: %w", err)
		}
	}
	for key, text := range r.configs {
		for _, s := range allSystems {
			if s.key == key {
				if err := os.WriteFile(filepath.Join(dir, "latest-"+s.file), []byte(text), 0o644); err != nil {
					return fmt.Errorf("writing results: %w", err)
				}
			}
		}
	}
	fmt.Println(md)
	progress("wrote %s/%s.{md,csv,svg} and latest.{md,csv,svg}", dir, stamp)
	return nil
}

// markdown is the whole report; chart is the SVG file name to link.
func (r *report) markdown(chart string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# sluice benchmark, %s\n\n", r.start.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Command: `go run ./bench%s`. %s\n\n", argString(r.args), r.setup())
	fmt.Fprintf(&b, "- Machine: %s, %d CPUs, %s memory, Linux %s\n", cpuModel(), runtime.NumCPU(), memTotal(), kernelRelease())
	fmt.Fprintf(&b, "- Versions: %s\n", r.versionLine())
	if !math.IsNaN(r.others) {
		fmt.Fprintf(&b, "- Other processes kept %.2f of the %d CPUs busy on average during the run%s\n",
			r.others, runtime.NumCPU(), noiseNote(r.others))
	}
	b.WriteString("\n")
	b.WriteString("Medians over the repetitions, with the range (min-max) when there are several. " +
		"↑: higher is better, ↓: lower is better. Ratios divide medians; the best peer is the better of HAProxy and nginx on that row.\n\n")
	b.WriteString(r.table())
	fmt.Fprintf(&b, "\n![sluice ratios](%s)\n", chart)
	b.WriteString(r.method())
	if t := r.targets(); t != "" {
		b.WriteString("\n## Targets (issues 3, 5, 9, 11 and 12)\n\n" + t)
	}
	if len(r.res.failures) > 0 {
		b.WriteString("\n## Failed runs\n\n")
		for _, f := range r.res.failures {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	}
	b.WriteString(r.configSection())
	return b.String()
}

// method says how each figure is measured.
func (r *report) method() string {
	return fmt.Sprintf(`
## How each figure is measured

Each timed window is cut into slices of %v; rates and latency percentiles are computed per slice and the median slice is taken, so that another process stalling the load for a moment spoils a slice rather than the figure. CPU is measured over the whole window.

- Throughput, client to backend: clients write 256 KiB buffers as fast as they can; the backend counts what it receives over the window. Backend to client: the backend writes 256 KiB buffers as fast as it can and the clients count what they read. Proxy CPU: utime+stime of the proxy and its children (/proc/PID/stat) over the same window, in %% of one core.
- Per proxy core-second: each repetition's rate divided by the proxy's CPU over the same window, in cores (work per second of one core's time), so that the comparison does not depend on how the cores were shared between the proxy and the load.
- Keep-alive requests: %d connections, each writing a %d-byte request and waiting for its echo before the next.
- New connections: %d clients, each connecting, writing %d bytes, reading the answer and the backend's close, then closing.
- Latency: %d keep-alive connections on fixed, staggered schedules, %d requests/s in all. A round trip is timed from the write, or from when the request was due if the previous answer came back too late to send it on time (wrk2's correction for coordinated omission).
- Idle connections: %d connections opened through the system, each proven end to end by one echo, then held silent for %v before reading. Proxy RSS and fds: growth of VmRSS and of /proc/PID/fd of the proxy and its children, on a proxy started afresh for the repetition. Machine memory: growth of the kernel's Slab + KernelStack + PageTables (after freeing empty slabs) plus the proxy's RssAnon; MemAvailable moves by tens of MB on its own on this kernel. Direct's row is the kernel memory of the client's and backend's sockets; "added over direct" subtracts it, repetition by repetition, leaving what the proxy costs.
- Real clients: each proxy has a listener for a PostgreSQL and a Redis server the bench starts (nothing synced to disk; trust authentication on loopback, so that connections cost what a proxy and a server do, not password hashing). pgbench -S (select only, scale %s, %d clients, 2 threads) on persistent connections and with -C (a connection per transaction); redis-benchmark GET with -k 1 (%d connections) and -k 0 (%d clients, a connection per request). Rates are the clients' own per-interval reports (pgbench -P 1 each second, redis-benchmark about every 250 ms), read as they come: the first report and those of the warm-up are skipped, the median report of the window is taken, and the proxy's CPU is read at the window's first and last report. A run in which a client reports an error or a failed transaction fails.
- UDP at full rate: %d flows (client sockets), each keeping up to %d datagrams of %d bytes in flight, sent %d at a time (sendmmsg) whenever a batch has come back, to an echo backend that answers in batches (recvmmsg, sendmmsg); a closed loop keeps the system saturated without the senders starving the backend, which shares the CPUs. A batch not back within %v is given up on. Datagrams/s: echoes received, median slice. Loss: datagrams sent that never came back, over warm-up and window, after waiting %v for late echoes. Each proxy's UDP listening sockets ask for a 4 MiB receive buffer (nginx: rcvbuf=%s) and end a session after %s without a datagram. HAProxy has no UDP.
- HTTP: each proxy has an HTTP/1.1 listener and an h2c one in front of the backend's HTTP/1.1 server (a %d-byte body per GET), with keep-alive connections to it: sluice's pool, HAProxy mode http with http-reuse always, nginx proxy_pass with upstream keepalive %d, proxy_http_version 1.1 and an empty Connection header; keepalive_requests raised to %d both sides; no access logs. Keep-alive: %d connections, one GET in flight on each. New connections: %d clients, each connecting, sending one GET with Connection: close, and reading the response and the proxy's close. Latency: the paced schedule above, with GETs. HTTP/2: h2load -c %d -m %d over h2c (prior knowledge), its own req/s over -D after --warm-up-time; direct has no h2c. Cached hits: the keep-alive load on /cached/small (%d B) or /cached/100k, which the backend alone marks max-age=3600 and each proxy caches in memory (sluice [caches] on a /cached route, HAProxy's cache section for path_beg /cached/, nginx proxy_cache in the run directory): every request after the first is a hit; direct's row is the backend answering.
- TLS: %d clients, each connecting, running a full TLS 1.3 handshake (Go's client: no session cache, no certificate verification, the key exchanges of the row), writing %d bytes, reading the answer and the close; certificates made at start (ECDSA P-256, RSA 2048). Terminated: each proxy ends TLS (sluice [tls], HAProxy bind ssl crt, nginx stream listen ssl) and connects to the plain backend; bulk: one TLS stream, client to backend. SNI passthrough: each proxy routes by the hello's server name (sluice sni_routes, HAProxy req.ssl_sni after inspect-delay, nginx ssl_preread and a map) to a Go TLS backend in the bench process, which is direct's row.
`, sliceLen, keepAliveConns, reqSize, newConnClients, reqSize, latencyConns, latencyRate, r.set.idleConns, r.set.settle,
		pgbenchScale, pgbenchClients, redisKeepClients, redisNewConnClient,
		udpFlows, udpWindow, udpSize, udpBatch, udpStall, udpTail, udpReadBuffer, udpSessionTimeout,
		reqSize, httpIdleBackendConns, httpKeepAliveRequests, httpKeepAliveConns, httpNewConnClients, h2Clients, h2Streams, reqSize,
		tlsClients, reqSize)
}

// setup says how the run was shaped.
func (r *report) setup() string {
	pin := "not pinned"
	if r.pinned {
		pin = fmt.Sprintf("proxies pinned to CPU %s, load and backends to the rest", r.set.proxyCPUs)
	}
	if r.nice != 0 {
		pin += fmt.Sprintf("; bench and proxies at nice %d", r.nice)
	}
	return fmt.Sprintf("%d repetition(s) with the systems interleaved; %v measured per timed scenario after %v of warm-up; "+
		"each proxy gets %d core(s) (HAProxy nbthread, nginx worker_processes, sluice GOMAXPROCS); %s. "+
		"Backends and load generators are Go code in the bench process, on loopback.",
		r.set.reps, r.set.dur, r.set.warm, r.set.cores, pin)
}

func (r *report) versionLine() string {
	var parts []string
	for _, k := range []string{"sluice", "haproxy", "nginx", "go", "postgres", "redis"} {
		if v, ok := r.versions[k]; ok {
			parts = append(parts, fmt.Sprintf("%s: %s", k, v))
		}
	}
	return strings.Join(parts, "; ")
}

// table is the Markdown table of absolute figures and ratios.
func (r *report) table() string {
	var b strings.Builder
	b.WriteString("| scenario | metric |")
	for _, s := range r.res.systems {
		b.WriteString(" " + s.name + " |")
	}
	b.WriteString(" sluice / best peer | sluice / direct |\n|---|---|")
	b.WriteString(strings.Repeat("---:|", len(r.res.systems)+2) + "\n")
	for _, sc := range r.res.scens {
		for _, m := range sc.metrics {
			if !r.res.measured(sc, m) {
				continue
			}
			arrow := "↑"
			if m.lowerBetter {
				arrow = "↓"
			}
			fmt.Fprintf(&b, "| %s | %s, %s %s |", sc.title(r.set), m.label, m.unit, arrow)
			for _, s := range r.res.systems {
				b.WriteString(" " + cell(m, r.res.summary(s.key, sc.key, m.key)) + " |")
			}
			vsPeer, vsDirect := r.res.ratios(sc, m)
			peer, _ := r.res.bestPeer(sc, m)
			peerCell := fmtRatio(vsPeer)
			if peer != nil && !math.IsNaN(vsPeer) {
				peerCell += " (" + peer.name + ")"
			}
			fmt.Fprintf(&b, " %s | %s |\n", peerCell, fmtRatio(vsDirect))
		}
	}
	return b.String()
}

// cell formats a median and its range.
func cell(m metric, s summary) string {
	if !s.ok() {
		return "-"
	}
	out := fmt.Sprintf(m.format, s.med)
	lo, hi := fmt.Sprintf(m.format, s.lo), fmt.Sprintf(m.format, s.hi)
	if lo != hi {
		out += " (" + lo + "-" + hi + ")"
	}
	return out
}

func fmtRatio(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}

// configSection shows each proxy's config, so a reader can check that the
// peers were set up fairly.
func (r *report) configSection() string {
	var b strings.Builder
	b.WriteString("\n## Configs\n\nPorts change from run to run; the rest is what ran.\n")
	for _, s := range allSystems {
		text, ok := r.configs[s.key]
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "\n<details><summary>%s (%s)</summary>\n\n```\n%s```\n</details>\n", s.name, s.file, text)
	}
	return b.String()
}

// csv has one row per system and metric, with every repetition's value,
// then the two ratio rows of each metric.
func (r *report) csv() []byte {
	var b strings.Builder
	w := csv.NewWriter(&b)
	w.Write([]string{"scenario", "metric", "unit", "lower_is_better", "system", "median", "min", "max", "reps", "values"})
	num := func(v float64) string {
		if math.IsNaN(v) {
			return ""
		}
		return strconv.FormatFloat(v, 'g', 6, 64)
	}
	for _, sc := range r.res.scens {
		for _, m := range sc.metrics {
			row := func(sys string, s summary, vals []float64) {
				var vs []string
				for _, v := range vals {
					vs = append(vs, num(v))
				}
				w.Write([]string{sc.key, m.key, m.unit, strconv.FormatBool(m.lowerBetter), sys,
					num(s.med), num(s.lo), num(s.hi), strconv.Itoa(s.n), strings.Join(vs, ";")})
			}
			for _, s := range r.res.systems {
				vals := r.res.vals[valKey{s.key, sc.key, m.key}]
				row(s.key, summarize(vals), vals)
			}
			vsPeer, vsDirect := r.res.ratios(sc, m)
			row("sluice/best_peer", summary{med: vsPeer, lo: math.NaN(), hi: math.NaN()}, nil)
			row("sluice/direct", summary{med: vsDirect, lo: math.NaN(), hi: math.NaN()}, nil)
		}
	}
	w.Flush()
	return []byte(b.String())
}

func argString(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return " " + strings.Join(slices.Clone(args), " ")
}

// memTotal is the machine's memory, rounded to GiB.
func memTotal() string {
	kb, err := keyKB("/proc/meminfo", "MemTotal")
	if err != nil {
		return "unknown"
	}
	return fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
}

// noiseNote warns when other work took a noticeable share of the machine.
func noiseNote(cpus float64) string {
	if cpus < 0.2 {
		return ""
	}
	return ": the figures are disturbed, rerun on a quieter machine to trust small differences"
}
