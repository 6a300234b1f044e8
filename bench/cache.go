package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
)

// The cached-hit scenarios (issue 15): keep-alive GETs of one object that
// each proxy's cache holds, small and 100 KiB, answered by the proxies
// from memory after the first. The backend marks only these paths
// cacheable, and the proxies cache only them, so the other HTTP rows are
// unchanged.
const (
	cachedPrefix  = "/cached/"
	cachedBigSize = 100 << 10
)

var (
	cachedSmallBody = bytes.Repeat([]byte("c"), reqSize)
	cachedBigBody   = bytes.Repeat([]byte("C"), cachedBigSize)
	cachedGetSmall  = []byte("GET /cached/small HTTP/1.1\r\nHost: bench\r\nUser-Agent: sluice-bench\r\n\r\n")
	cachedGetBig    = []byte("GET /cached/100k HTTP/1.1\r\nHost: bench\r\nUser-Agent: sluice-bench\r\n\r\n")
)

// cachedBody returns the body of a cacheable path, from the start of a
// request line ("GET /cached/100k ..."), or nil for any other path.
func cachedBody(line []byte) []byte {
	switch {
	case bytes.HasPrefix(line, []byte("GET /cached/100k")):
		return cachedBigBody
	case bytes.HasPrefix(line, []byte("GET /cached/")):
		return cachedSmallBody
	}
	return nil
}

// writeCached writes a cacheable 200 with body.
func writeCached(w *bufio.Writer, body []byte, closing bool) {
	w.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: max-age=3600\r\nContent-Length: ")
	w.WriteString(strconv.Itoa(len(body)))
	w.WriteString("\r\n")
	if closing {
		w.WriteString("Connection: close\r\n")
	}
	w.WriteString("\r\n")
	w.Write(body)
}

// cacheScenario is keep-alive GETs of the small or the 100 KiB cached
// object.
func cacheScenario(big bool) *scenario {
	key, short, size, req := "http-cached", "HTTP cached hit", reqSize, cachedGetSmall
	if big {
		key, short, size, req = key+"-100k", short+" 100 KiB", cachedBigSize, cachedGetBig
	}
	return &scenario{
		key:   key,
		short: short,
		title: func(settings) string {
			return fmt.Sprintf("HTTP/1.1 keep-alive GETs answered from the proxy's cache, %d connections, %d B bodies", httpKeepAliveConns, size)
		},
		proto: "http",
		run: func(ctx context.Context, t target, s settings) (map[string]float64, error) {
			return keepAliveGets(ctx, t, s.opts(), httpKeepAliveConns, req)
		},
		metrics: loadMetrics("rps", "requests", "req/s", "%.0f", "req/core-s"),
	}
}

// sluiceCache renders sluice's cache and the route of the bench_http
// listener that uses it.
func sluiceCache() string {
	return `
[caches.bench]
max_size = "64MiB"
max_object = "1MiB"

[[listeners.bench_http.routes]]
path = "/cached"
pool = "b"
cache = "bench"
`
}

// haproxyCache renders HAProxy's cache section; haproxyHTTP uses it for
// the cached paths only.
const haproxyCache = `
cache bench
    total-max-size 64
    max-object-size 1048576
    max-age 3600
`

// nginxCachePath renders nginx's proxy_cache_path in the run directory,
// and its temporary files' path there too: nginx writes an object to a
// temporary file before moving it into the cache, and the default path
// is not the bench's to write.
func nginxCachePath(dir string) string {
	return fmt.Sprintf("    proxy_cache_path %s/nginx-cache levels=1:2 keys_zone=bench:10m max_size=64m;\n"+
		"    proxy_temp_path %s/nginx-proxy-temp;\n", dir, dir)
}

// cacheLatencyScenario is the HTTP latency scenario's paced GETs, of the
// small cached object: the latency of a hit.
func cacheLatencyScenario() *scenario {
	return &scenario{
		key:   "http-cached-latency",
		short: "HTTP cached hit latency",
		title: func(settings) string {
			return fmt.Sprintf("HTTP/1.1 latency of cache hits at %d req/s, %d keep-alive connections, %d B bodies", latencyRate, latencyConns, reqSize)
		},
		proto: "http",
		run: func(ctx context.Context, t target, s settings) (map[string]float64, error) {
			return pacedGets(ctx, t, s.opts(), latencyRate, latencyConns, cachedGetSmall)
		},
		metrics: []metric{
			{key: "p50", label: "p50", unit: "µs", format: "%.0f", lowerBetter: true},
			{key: "p99", label: "p99", unit: "µs", format: "%.0f", lowerBetter: true},
			{key: "p99_added", label: "p99 added over direct", unit: "µs", format: "%.0f", lowerBetter: true, proxyOnly: true, overDirect: "p99"},
		},
	}
}
