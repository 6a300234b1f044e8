package main

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// TestPeersInFrontAndBehind puts sluice between real peers: HAProxy
// (send-proxy, send-proxy-v2) and nginx (proxy_protocol on) in front,
// nginx (listen ... proxy_protocol) and HAProxy (accept-proxy) behind it
// with send_proxy v1 and v2. Every backend must report the client's
// address and port, and sluice's log must name the client and, as via=,
// the proxy in front. The HAProxy backends are health checked over HTTP:
// without the header sluice's checks send first, HAProxy would refuse
// every check and no connection could reach them.
func TestPeersInFrontAndBehind(t *testing.T) {
	nginxBack, haproxyBack := freePort(t), freePort(t)
	type route struct {
		name, sendProxy, backend, health, request string
		sluice                                    string // sluice's listener
	}
	routes := []route{
		{name: "nginx_v1", sendProxy: "v1", backend: nginxBack, health: "tcp"},
		{name: "nginx_v2", sendProxy: "v2", backend: nginxBack, health: "tcp"},
		{name: "haproxy_v1", sendProxy: "v1", backend: haproxyBack, health: "http", request: "GET / HTTP/1.0\r\n\r\n"},
		{name: "haproxy_v2", sendProxy: "v2", backend: haproxyBack, health: "http", request: "GET / HTTP/1.0\r\n\r\n"},
	}
	var cfg strings.Builder
	for i := range routes {
		r := &routes[i]
		r.sluice = freePort(t)
		fmt.Fprintf(&cfg, `[listeners.%s]
bind = %q
pool = %q
proxy_protocol = "any"
proxy_protocol_from = ["127.0.0.1"]
[pools.%s]
send_proxy = %q
[pools.%s.health]
kind = %q
interval = "500ms"
timeout = "400ms"
[[pools.%s.backends]]
address = %q
`, r.name, r.sluice, r.name, r.name, r.sendProxy, r.name, r.health, r.name, r.backend)
	}

	// Fronts: per sluice listener, an nginx stream server and two
	// HAProxy frontends.
	type front struct{ name, addr string }
	var fronts [][]front
	var nginxStream, haproxyCfg strings.Builder
	fmt.Fprintf(&nginxStream, "server { listen %s proxy_protocol; return \"$proxy_protocol_addr $proxy_protocol_port\\n\"; }\n", nginxBack)
	fmt.Fprintf(&haproxyCfg, `frontend back
	mode http
	bind %s accept-proxy
	http-request return status 200 content-type text/plain lf-string "%%[src] %%[src_port]\n"
`, haproxyBack)
	var ready []string
	for _, r := range routes {
		fs := []front{{"nginx proxy_protocol", freePort(t)}, {"haproxy send-proxy", freePort(t)}, {"haproxy send-proxy-v2", freePort(t)}}
		fmt.Fprintf(&nginxStream, "server { listen %s; proxy_pass %s; proxy_protocol on; }\n", fs[0].addr, r.sluice)
		for i, opt := range []string{"send-proxy", "send-proxy-v2"} {
			fmt.Fprintf(&haproxyCfg, "listen front_%s_%d\n\tbind %s\n\tserver s %s %s\n", r.name, i, fs[i+1].addr, r.sluice, opt)
		}
		fronts = append(fronts, fs)
		ready = append(ready, fs[0].addr)
	}
	startNginx(t, nginxStream.String(), "", append(ready, nginxBack)...)
	startHAProxy(t, haproxyCfg.String(), haproxyBack)

	p := startSluice(t, nil, "-c", writeFile(t, cfg.String()))
	p.waitOutput(t, "listening")
	for i, r := range routes {
		for j, f := range fronts[i] {
			src := fmt.Sprintf("127.0.0.%d", 10+i*3+j)
			c := dialFrom(t, src, f.addr)
			port := c.LocalAddr().(*net.TCPAddr).Port
			if r.request != "" {
				c.Write([]byte(r.request))
			}
			got := readAll(c)
			c.Close() // sluice logs the connection when it ends
			want := fmt.Sprintf("%s %d\n", src, port)
			if !strings.HasSuffix(got, want) {
				t.Errorf("%s -> sluice -> %s: backend reports %q, want %q", f.name, r.name, got, want)
			}
			line := fmt.Sprintf("listener=%s client=%s:%d via=127.0.0.1:", r.name, src, port)
			p.waitOutput(t, line)
		}
	}
}

// readAll reads c until it ends or fails.
func readAll(c net.Conn) string {
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

// tcpNamed starts n TCP servers that each answer every connection
// with their name and close it.
func tcpNamed(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("backend-%d\n", i)
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte(name))
				c.Close()
			}
		})
		t.Cleanup(func() { ln.Close(); wg.Wait() })
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs
}

// TestTwoTiers runs sluice as two tiers, the first sending PROXY v2 to the
// second, which balances by Maglev on the client's IP: each client must
// reach the backend that a single tier picks for it, and the second
// tier's log must name the client. If the second tier hashed the first
// tier's address instead, every client would reach one backend.
func TestTwoTiers(t *testing.T) {
	backends := tcpNamed(t, 3)
	tier1, tier2, single := freePort(t), freePort(t), freePort(t)
	maglev := "balance = \"maglev\"\nhash_key = \"client_ip\"\n"
	for _, b := range backends {
		maglev += fmt.Sprintf("[[pools.%%[1]s.backends]]\naddress = %q\n", b)
	}
	first := startSluice(t, nil, "-c", writeFile(t, fmt.Sprintf(`[listeners.tier1]
bind = %q
pool = "tier2"
[pools.tier2]
send_proxy = "v2"
[[pools.tier2.backends]]
address = %q
[listeners.single]
bind = %q
pool = "apps"
[pools.apps]
`, tier1, tier2, single)+fmt.Sprintf(maglev, "apps")))
	second := startSluice(t, nil, "-c", writeFile(t, fmt.Sprintf(`[listeners.tier2]
bind = %q
pool = "apps"
proxy_protocol = "v2"
proxy_protocol_from = ["127.0.0.1"]
[pools.apps]
`, tier2)+fmt.Sprintf(maglev, "apps")))
	first.waitOutput(t, "listening")
	second.waitOutput(t, "listening")
	seen := map[string]int{}
	for i := range 30 {
		src := fmt.Sprintf("127.0.1.%d", 10+i)
		c := dialFrom(t, src, tier1)
		port := c.LocalAddr().(*net.TCPAddr).Port
		two := readAll(c)
		c.Close() // tier two logs the connection when it ends
		one := ask(t, src, single, "")
		if two != one || two == "" {
			t.Errorf("client %s: two tiers reach %q, one tier %q", src, two, one)
		}
		seen[two]++
		second.waitOutput(t, fmt.Sprintf("listener=tier2 client=%s:%d via=127.0.0.1:", src, port))
	}
	if len(seen) < 2 {
		t.Errorf("30 clients all reached %v: the second tier did not balance by the client", seen)
	}
	// The first tier's unique IDs, received by the second, are logged.
	if n := len(uniqueIDRE.FindAllString(second.out.String(), -1)); n != 30 {
		t.Errorf("the second tier logged %d unique IDs, want 30:\n%s", n, second.out)
	}
}

var uniqueIDRE = regexp.MustCompile(`listener=tier2 .* unique_id=[0-9a-f]{32} `)
