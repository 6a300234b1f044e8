package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// system is one way for the load to reach the backend: directly, or
// through a proxy that the bench runs as its own process from a config it
// writes. Each protocol a proxy carries is a listener of its config on the
// same address (UDP ports are separate from TCP's), not a new system.
type system struct {
	key  string // id used by -systems and in the CSV
	name string // column heading
	// protos are the scenario protocols the system's config carries
	// listeners for; nil means all (direct).
	protos []string
	// file is the config file name; empty for direct, which has no process.
	file string
	// config renders the config file.
	config func(p proxyParams) string
	// argv is the command line that runs bin with the config at cfg.
	argv func(bin, cfg string, p proxyParams) []string
	// env is added to the proxy's environment.
	env func(p proxyParams) []string
}

// speaks says whether the system can run scenarios of protocol proto.
func (s *system) speaks(proto string) bool {
	return s.protos == nil || slices.Contains(s.protos, proto)
}

// proxyParams is what a proxy config is rendered from.
type proxyParams struct {
	listen  string // frontend address the load connects to
	backend string // the in-process backend
	cores   int    // threads, workers or GOMAXPROCS
	dir     string // run directory for pid files and logs
	// relays are further TCP listeners, each with a server of its own
	// (PostgreSQL, Redis) as its one backend, set up as the main one.
	relays []relay
	// httpListen is an HTTP listener (HTTP/1.1, keep-alive) and h2Listen
	// an h2c one (HTTP/2 with prior knowledge), both to the backend's
	// HTTP mode, for the L7 scenarios. nginx cannot serve both on one
	// port, so every proxy gets two.
	httpListen, h2Listen string
	// tls are the TLS scenarios' listeners; nil when none is run.
	tls *tlsListens
}

// relay is a TCP listener of a proxy for one database server.
type relay struct {
	name    string // "postgres" or "redis": a valid section name in every config
	listen  string
	backend string
}

// each renders each relay with f and joins them.
func (p proxyParams) each(f func(r relay) string) string {
	var b strings.Builder
	for _, r := range p.relays {
		b.WriteString(f(r))
	}
	return b.String()
}

// Timeouts shared by all proxies so that none of them closes a held idle
// connection or gives up on a slow dial sooner than the others.
const (
	idleTimeout    = "10m"
	connectTimeout = "5s"
	// udpSessionTimeout ends a UDP session idle for this long: sluice's
	// session_timeout and nginx's proxy_timeout, so that neither holds
	// sessions forever nor ends a live flow's.
	udpSessionTimeout = "30s"
	// udpReadBuffer is the receive buffer of each UDP listening socket:
	// sluice always asks for 4 MiB (internal/listen.UDPReadBuffer); nginx
	// gets the same through rcvbuf. The kernel caps both at
	// net.core.rmem_max.
	udpReadBuffer = "4m"
)

var (
	// direct's backend speaks HTTP/1.1 only: h2 scenarios have no
	// direct column.
	// The TLS backend of SNI passthrough terminates TLS itself: direct
	// has that column, not the terminated ones.
	directSystem = &system{key: "direct", name: "direct", protos: []string{"tcp", "udp", "http", "sni"}}

	sluiceSystem = &system{
		key: "sluice", name: "sluice", file: "sluice.toml", protos: []string{"tcp", "udp", "http", "h2", "tls", "sni"},
		config: func(p proxyParams) string {
			return fmt.Sprintf(`drain_timeout = "1s"

[log]
level = "error"

[listeners.bench]
bind = %q
protocol = "tcp"
pool = "b"
sockets = %d
idle_timeout = %q

# UDP on the same address and port; the UDP echo backend shares the TCP
# backend's. responses = 0 (the default, as nginx's unset proxy_responses):
# a flow is a stream of datagrams, each echoed once.
[listeners.bench_udp]
bind = %q
protocol = "udp"
pool = "b"
sockets = %d
session_timeout = %q

[pools.b]
balance = "round_robin"

[[pools.b.backends]]
address = %q
`, p.listen, p.cores, idleTimeout, p.listen, p.cores, udpSessionTimeout, p.backend) + sluiceHTTP(p) + sluiceTLS(p) + p.each(func(r relay) string {
				return fmt.Sprintf(`
[listeners.%s]
bind = %q
protocol = "tcp"
pool = %q
sockets = %d
idle_timeout = %q

[pools.%s]
balance = "round_robin"

[[pools.%s.backends]]
address = %q
`, r.name, r.listen, r.name, p.cores, idleTimeout, r.name, r.name, r.backend)
			})
		},
		argv: func(bin, cfg string, _ proxyParams) []string { return []string{bin, "-c", cfg} },
		env: func(p proxyParams) []string {
			return []string{"GOMAXPROCS=" + strconv.Itoa(p.cores)}
		},
	}

	haproxySystem = &system{
		key: "haproxy", name: "HAProxy", file: "haproxy.cfg", protos: []string{"tcp", "http", "h2", "tls", "sni"}, // 2.6 has no UDP
		config: func(p proxyParams) string {
			return fmt.Sprintf(`# HAProxy at its best on a TCP relay: forced splice both ways (splice-auto
# hardly splices on loopback), one thread per core given to the proxy.
global
    nbthread %d
    # With strict-limits (on by default since 2.3) HAProxy refuses to start
    # if it cannot raise its fd limit to 2*maxconn plus 2 per splice pipe
    # (maxpipes defaults to maxconn/4): 7500 needs about 18,800 of the
    # 20,000 the machine allows a process.
    maxconn 7500

defaults
    mode tcp
    maxconn 7500
    timeout connect %s
    timeout client %s
    timeout server %s
    option splice-request
    option splice-response

frontend bench
    bind %s
    default_backend b

backend b
    server s1 %s
`, p.cores, connectTimeout, idleTimeout, idleTimeout, p.listen, p.backend) + haproxyHTTP(p) + haproxyTLS(p) + p.each(func(r relay) string {
				return fmt.Sprintf(`
frontend %s
    bind %s
    default_backend %s

backend %s
    server s1 %s
`, r.name, r.listen, r.name, r.name, r.backend)
			})
		},
		argv: func(bin, cfg string, _ proxyParams) []string { return []string{bin, "-db", "-f", cfg} },
	}

	nginxSystem = &system{
		key: "nginx", name: "nginx", file: "nginx.conf", protos: []string{"tcp", "udp", "http", "h2", "tls", "sni"},
		config: func(p proxyParams) string {
			return fmt.Sprintf(`# nginx stream proxy: one worker per core given to the proxy, a
# SO_REUSEPORT socket per worker so the kernel spreads connections.
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
# Workers as the bench's user: they write the cached-hit scenarios'
# cache in the run directory, which is the bench's alone. (Without
# root, nginx ignores this line with a warning.)
user root;
worker_processes %d;
worker_rlimit_nofile 20000;
pid %s;
error_log %s error;

events {
    worker_connections 19000;
}

stream {
    upstream b {
        server %s;
    }
    server {
        listen %s reuseport;
        proxy_pass b;
        proxy_connect_timeout %s;
        proxy_timeout %s;
    }
    # UDP on the same address and port, with sluice's receive buffer.
    # reuseport also keeps each client's datagrams in one session (and
    # worker). proxy_responses is left unset (no limit), as sluice's
    # responses: each flow is a stream of datagrams, each echoed once,
    # and a session ends after proxy_timeout without one.
    server {
        listen %s udp reuseport rcvbuf=%s;
        proxy_pass b;
        proxy_timeout %s;
    }
%s}
`, p.cores, filepath.Join(p.dir, "nginx.pid"), filepath.Join(p.dir, "nginx-error.log"),
				p.backend, p.listen, connectTimeout, idleTimeout, p.listen, udpReadBuffer, udpSessionTimeout,
				p.each(func(r relay) string {
					return fmt.Sprintf(`
    upstream %s {
        server %s;
    }
    server {
        listen %s reuseport;
        proxy_pass %s;
        proxy_connect_timeout %s;
        proxy_timeout %s;
    }
`, r.name, r.backend, r.listen, r.name, connectTimeout, idleTimeout)
				})+nginxTLS(p)) + nginxHTTP(p)
		},
		argv: func(bin, cfg string, p proxyParams) []string {
			// -e: nginx opens its default error log before it reads the
			// config, and that path may not be writable.
			return []string{bin, "-e", filepath.Join(p.dir, "nginx-error.log"), "-p", p.dir + "/", "-c", cfg}
		},
	}

	allSystems = []*system{directSystem, sluiceSystem, haproxySystem, nginxSystem}
)

// freePort returns a loopback address whose port nothing uses now, over
// TCP or UDP: a proxy listens on both.
func freePort() (string, error) {
	var err error
	for range 20 {
		var addr string
		if addr, err = freeTCPAndUDP(); err == nil {
			return addr, nil
		}
	}
	return "", fmt.Errorf("finding a free port: %w", err)
}

// freeTCPAndUDP picks a free TCP port and checks that its UDP twin is
// free too.
func freeTCPAndUDP() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	addr := ln.Addr().String()
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return "", err
	}
	pc.Close()
	return addr, nil
}

// errNoSluice says the checkout has no cmd/sluice to build yet.
var errNoSluice = errors.New("bench: no cmd/sluice in this checkout")

// buildSluice builds cmd/sluice of the module at root into dir.
func buildSluice(root, dir string) (string, error) {
	if _, err := os.Stat(filepath.Join(root, "cmd", "sluice")); err != nil {
		return "", errNoSluice
	}
	bin := filepath.Join(dir, "sluice")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/sluice")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building sluice: %w: %s", err, out)
	}
	return bin, nil
}

// httpKeepAliveRequests is how many requests every proxy serves on one
// connection, either side: nginx's default of 1,000 would force reconnects
// the others do not make.
const httpKeepAliveRequests = 1000000

// httpIdleBackendConns is how many idle keep-alive connections to the
// backend each proxy keeps: more than the loads' connections, so none
// is closed for want of room.
const httpIdleBackendConns = 64

// sluiceHTTP renders sluice's HTTP and h2c listeners (one listener serves
// both; two keep the addresses the same as the peers'). The access log
// is off through [log] level = "error": request lines are info.
func sluiceHTTP(p proxyParams) string {
	var b strings.Builder
	for _, l := range []struct{ name, addr string }{{"bench_http", p.httpListen}, {"bench_h2", p.h2Listen}} {
		fmt.Fprintf(&b, `
[listeners.%s]
bind = %q
protocol = "http"
pool = "b"
sockets = %d
idle_timeout = %q
max_idle_per_backend = %d
`, l.name, l.addr, p.cores, idleTimeout, httpIdleBackendConns)
	}
	b.WriteString(sluiceCache())
	return b.String()
}

// haproxyHTTP renders HAProxy's mode http frontend, with http-reuse always
// (the default "safe" opens a server connection for each first request of
// a client connection) and no log directive, so no access log.
func haproxyHTTP(p proxyParams) string {
	return haproxyCache + fmt.Sprintf(`
frontend bench_http
    mode http
    bind %s
    bind %s proto h2
    timeout http-keep-alive %s
    default_backend bh

backend bh
    mode http
    http-reuse always
    http-request cache-use bench if { path_beg /cached/ }
    http-response cache-store bench if { path_beg /cached/ }
    server s1 %s
`, p.httpListen, p.h2Listen, idleTimeout, p.backend)
}

// nginxHTTP renders nginx's proxy_pass with upstream keepalive, HTTP/1.1
// to the backend and an empty Connection header (else nginx sends close
// and keepalive does nothing), keepalive_requests raised on both sides,
// and no access log.
func nginxHTTP(p proxyParams) string {
	return fmt.Sprintf(`
http {
    access_log off;
    keepalive_timeout %s;
    keepalive_requests %d;
%s    upstream bh {
        server %s;
        keepalive %d;
        keepalive_requests %d;
        keepalive_timeout %s;
    }
    server {
        listen %s reuseport;
        listen %s http2 reuseport;
        location / {
            proxy_pass http://bh;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout %s;
            proxy_read_timeout %s;
        }
        location /cached/ {
            proxy_pass http://bh;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
        }
    }
}
`, idleTimeout, httpKeepAliveRequests, nginxCachePath(p.dir), p.backend, httpIdleBackendConns, httpKeepAliveRequests, idleTimeout,
		p.httpListen, p.h2Listen, connectTimeout, idleTimeout)
}
