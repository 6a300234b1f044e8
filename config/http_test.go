package config

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"sluice/internal/access"
	"sluice/l7/route"
)

const goodHTTP = `[listeners.web]
bind = "127.0.0.1:8080"
protocol = "http"
pool = "db"
trusted_proxies = ["10.0.0.0/8", "::ffff:192.168.0.0/112"]
read_header_timeout = "5s"
response_timeout = "30s"
max_header_bytes = 16384
max_body_bytes = 1048576
max_url_bytes = 4096
max_requests_per_connection = 1000
requests_per_client = "600/m"
requests_per_client_burst = 50
fail_statuses = [502, 503]

[[listeners.web.routes]]
name = "health"
path_exact = "/healthz"
respond = 200
body = "ok"

[[listeners.web.routes]]
host = "Insecure.Example."
redirect_https = true

[[listeners.web.routes]]
path = "/old/"
redirect = "https://new.example/"
code = 308

[[listeners.web.routes]]
path = "/sticky"
pool = "grpc"
hash_cookie = "sid"
compress = true
strip_prefix = "/sticky"
add_prefix = "/v2"
set_host = "backend.internal:8080"
set_request_headers = { x-env = "prod", "X-Forwarded-Proto" = "https" }
remove_request_headers = "X-Debug"
set_response_headers = { "X-Frame-Options" = "DENY" }
remove_response_headers = ["server"]

[[listeners.web.routes]]
host = "*.example.com"
path = "/api"
method = ["GET", "POST"]
header = "x-canary"
header_value = "1"
client = ["192.0.2.0/24", "2001:db8::1"]
allow_methods = "GET"
allow = ["192.0.2.0/25"]
deny = ["192.0.2.7"]
requests_per_client = "5/s"
pool = "grpc"

[pools.grpc]
h2c = true
balance = "maglev"
[[pools.grpc.backends]]
address = "10.0.0.4:50051"
` + poolDB

func TestParseHTTP(t *testing.T) {
	cfg, err := parseFake(goodHTTP)
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Listeners[0]
	if l.Protocol != HTTP || l.Pool != "db" || l.IdleTimeout != defaultHTTPIdleTimeout || l.ConnectTimeout != defaultConnectTimeout {
		t.Errorf("listener %+v", l)
	}
	p := netip.MustParsePrefix
	want := &HTTPListener{
		TrustedProxies:           []netip.Prefix{p("10.0.0.0/8"), p("192.168.0.0/16")},
		ReadHeaderTimeout:        5 * time.Second,
		ResponseTimeout:          30 * time.Second,
		MaxHeaderBytes:           16384,
		MaxBodyBytes:             1 << 20,
		MaxURLBytes:              4096,
		MaxRequestsPerConnection: 1000,
		RequestsPerClient:        access.Rate{N: 600, Per: time.Minute},
		RequestsPerClientBurst:   50,
		FailStatuses:             []int{502, 503},
		MaxIdlePerBackend:        defaultMaxIdlePerBackend,
		BackendIdleTimeout:       defaultBackendIdleTimeout,
		Routes: []route.Route{
			{Name: "health", Match: route.Match{Path: "/healthz", PathExact: true}, Kind: route.Respond, Status: 200,
				Body: "ok", ContentType: defaultContentType},
			{Name: "routes[1]", Match: route.Match{Host: "insecure.example"}, Kind: route.Redirect, HTTPS: true, Status: 301},
			{Name: "routes[2]", Match: route.Match{Path: "/old/"}, Kind: route.Redirect, Location: "https://new.example/", Status: 308},
			{Name: "routes[3]", Match: route.Match{Path: "/sticky"}, Kind: route.Forward, Pool: "grpc", HashCookie: "sid", Compress: true,
				Rewrite: route.Rewrite{StripPrefix: "/sticky", AddPrefix: "/v2", Host: "backend.internal:8080",
					SetRequest:    map[string]string{"X-Env": "prod", "X-Forwarded-Proto": "https"},
					RemoveRequest: []string{"X-Debug"}, SetResponse: map[string]string{"X-Frame-Options": "DENY"},
					RemoveResponse: []string{"Server"}}},
			{Name: "routes[4]", Match: route.Match{Host: "*.example.com", Path: "/api", Methods: []string{"GET", "POST"},
				Header: "X-Canary", HeaderValue: "1", Clients: []netip.Prefix{p("192.0.2.0/24"), p("2001:db8::1/128")}},
				AllowMethods: []string{"GET"}, Allow: []netip.Prefix{p("192.0.2.0/25")}, Deny: []netip.Prefix{p("192.0.2.7/32")},
				RequestRate: access.Rate{N: 5, Per: time.Second},
				Kind:        route.Forward, Pool: "grpc"},
		},
	}
	if !reflect.DeepEqual(l.HTTP, want) {
		t.Errorf("got  %+v\nwant %+v", l.HTTP, want)
	}
	if !cfg.Pool("grpc").H2C || cfg.Pool("db").H2C {
		t.Error("h2c not read per pool")
	}
}

const httpHead = "[listeners.web]\nbind = \"127.0.0.1:8080\"\nprotocol = \"http\"\n"

var badHTTPConfigs = []struct {
	name string
	toml string
	want []string
}{
	{"route after catch-all", httpHead + "[[listeners.web.routes]]\npool = \"db\"\n[[listeners.web.routes]]\npath = \"/x\"\npool = \"db\"\n" + poolDB,
		[]string{"t.toml:6: listeners.web.routes[1]: unreachable: listeners.web.routes[0] (line 4) matches every request this route matches"}},
	{"narrower after wider", httpHead + "[[listeners.web.routes]]\nhost = \"*.example.com\"\npath = \"/api\"\npool = \"db\"\n" +
		"[[listeners.web.routes]]\nhost = \"a.example.com\"\npath = \"/api/v2\"\nmethod = \"GET\"\npool = \"db\"\n" + poolDB,
		[]string{"t.toml:8: listeners.web.routes[1]: unreachable: listeners.web.routes[0] (line 4)"}},
	{"default pool after catch-all", httpHead + "pool = \"db\"\n[[listeners.web.routes]]\npath = \"/\"\nrespond = 404\n" + poolDB,
		[]string{"t.toml:4: listeners.web.pool: unreachable: routes[0] (line 5) matches every request"}},
	{"unknown pools", httpHead + "pool = \"nope\"\n[[listeners.web.routes]]\npath = \"/a\"\npool = \"gone\"\n" + poolDB,
		[]string{`t.toml:4: listeners.web.pool: no pool "nope" in this file`,
			`t.toml:7: listeners.web.routes[0].pool: no pool "gone" in this file`}},
	{"burst without rate", httpHead + "pool = \"db\"\nrequests_per_client_burst = 5\n" + poolDB,
		[]string{"t.toml:5: listeners.web.requests_per_client_burst: applies only with requests_per_client set"}},
	{"bad request rate", httpHead + "pool = \"db\"\nrequests_per_client = \"5/d\"\nrequests_per_client_burst = 0\n" + poolDB,
		[]string{`t.toml:5: listeners.web.requests_per_client: invalid rate "5/d": the unit must be s, m or h`,
			"t.toml:6: listeners.web.requests_per_client_burst: must be 1..1000000, not 0"}},
	{"route burst without rate", httpHead + "[[listeners.web.routes]]\npool = \"db\"\nrequests_per_client_burst = 2\n" + poolDB,
		[]string{"t.toml:6: listeners.web.routes[0].requests_per_client_burst: applies only with requests_per_client set"}},
	{"compress on a redirect", httpHead + "[[listeners.web.routes]]\nredirect = \"/x\"\ncompress = true\n" + poolDB,
		[]string{"t.toml:6: listeners.web.routes[0].compress: applies only with pool"}},
	{"nothing to do", httpHead + poolDB,
		[]string{"t.toml:1: listeners.web.routes: no routes and no pool"}},
	{"bad conditions", httpHead + "[[listeners.web.routes]]\nhost = \"exa mple\"\npath = \"api\"\nmethod = \"get\"\n" +
		"header = \"x y\"\nclient = [\"10.0.0.1/8\"]\npool = \"db\"\n" + poolDB,
		[]string{`t.toml:5: listeners.web.routes[0].host: "exa mple": want a host name`,
			`t.toml:6: listeners.web.routes[0].path: "api": must start with /`,
			`t.toml:7: listeners.web.routes[0].method: methods are case-sensitive: did you mean "GET"?`,
			`t.toml:8: listeners.web.routes[0].header: "x y" is not a header name`,
			`t.toml:9: listeners.web.routes[0].client: entry 0: "10.0.0.1/8" has host bits set: did you mean "10.0.0.0/8"?`}},
	{"unclean path", httpHead + "[[listeners.web.routes]]\npath = \"/a/../b\"\npool = \"db\"\n" + poolDB,
		[]string{`t.toml:5: listeners.web.routes[0].path: "/a/../b" never matches: requests are routed on their cleaned path; did you mean "/b"?`}},
	{"two ends", httpHead + "[[listeners.web.routes]]\npool = \"db\"\nrespond = 200\n" + poolDB,
		[]string{"t.toml:6: listeners.web.routes[0].respond: a route ends in one of pool, redirect, redirect_https or respond, not pool and respond"}},
	{"no end", httpHead + "[[listeners.web.routes]]\npath = \"/x\"\n" + poolDB,
		[]string{"t.toml:4: listeners.web.routes[0].pool: a route ends in one of pool, redirect, redirect_https or respond; this one has none"}},
	{"end options", httpHead + "[[listeners.web.routes]]\npool = \"db\"\ncode = 301\nbody = \"x\"\n" + poolDB,
		[]string{"t.toml:6: listeners.web.routes[0].code: applies only with redirect or redirect_https",
			"t.toml:7: listeners.web.routes[0].body: applies only with respond"}},
	{"bad redirect", httpHead + "[[listeners.web.routes]]\nredirect = \"ftp://x\"\ncode = 200\n" + poolDB,
		[]string{`t.toml:5: listeners.web.routes[0].redirect: "ftp://x": want an http(s) URL`,
			"t.toml:6: listeners.web.routes[0].code: must be 300..399, not 200"}},
	{"tcp keys on http", httpHead + "pool = \"db\"\nhalf_closed_timeout = \"1s\"\nmax_connections = -3\n" + poolDB,
		[]string{`t.toml:5: listeners.web.half_closed_timeout: applies only to protocol = "tcp", not "http"`,
			`t.toml:6: listeners.web.max_connections: must be 0..9223372036854775807, not -3`}},
	{"http keys on tcp", listenerPG + "routes = []\ntrusted_proxies = [\"10.0.0.0/8\"]\n" + poolDB,
		[]string{`listeners.pg.routes: applies only to protocol = "http", not "tcp"`,
			`listeners.pg.trusted_proxies: applies only to protocol = "http", not "tcp"`}},
	{"http and tcp on one port", httpHead + "pool = \"db\"\n" + listenerPG[:len("\n[listeners.pg]\n")] + "bind = \"127.0.0.1:8080\"\npool = \"db\"\n" + poolDB,
		[]string{"listeners.web.bind: 127.0.0.1:8080 conflicts with listeners.pg.bind"}},
	{"hash keys", httpHead + "[[listeners.web.routes]]\npath = \"/a\"\npool = \"db\"\nhash_header = \"X-User\"\n" +
		"[[listeners.web.routes]]\npath = \"/b\"\nrespond = 200\nhash_cookie = \"sid\"\n" +
		"[[listeners.web.routes]]\npath = \"/c\"\npool = \"db\"\nhash_header = \"a\"\nhash_cookie = \"b\"\n" + poolDB,
		[]string{`t.toml:7: listeners.web.routes[0].hash_header: applies only to a pool with balance = "maglev"; pool "db" has "round_robin"`,
			"t.toml:11: listeners.web.routes[1].hash_cookie: applies only with pool",
			"t.toml:16: listeners.web.routes[2].hash_cookie: a route hashes hash_header or hash_cookie, not both"}},
	{"bad rewrites", httpHead + "[[listeners.web.routes]]\npath = \"/api\"\npool = \"db\"\nstrip_prefix = \"/ap\"\n" +
		"set_host = \"a b\"\nset_request_headers = { Connection = \"x\", \"X-A\" = \"a\\nb\" }\nremove_response_headers = [\"bad name\"]\n" +
		"[[listeners.web.routes]]\npath = \"/r\"\nrespond = 200\nadd_prefix = \"/x\"\n" + poolDB,
		[]string{`t.toml:7: listeners.web.routes[0].strip_prefix: "/ap" must be a prefix of the route's path ("/api")`,
			`t.toml:8: listeners.web.routes[0].set_host: "a b": want a host name`,
			`t.toml:9: listeners.web.routes[0].set_request_headers: "Connection" is managed by sluice`,
			`t.toml:9: listeners.web.routes[0].set_request_headers: the value of "X-A" has control characters`,
			`t.toml:10: listeners.web.routes[0].remove_response_headers: "bad name" is not a header name`,
			"t.toml:14: listeners.web.routes[1].add_prefix: applies only with pool"}},
	{"send_proxy behind http", httpHead + "pool = \"db\"\n[pools.db]\nsend_proxy = \"v2\"\n[[pools.db.backends]]\naddress = \"10.0.0.3:80\"\n",
		[]string{`t.toml:4: listeners.web.pool: pool "db" has send_proxy, which an HTTP listener cannot honour`}},
	{"client identity keys on http", httpHead + "pool = \"db\"\nallow = [\"10.0.0.0/8\"]\nproxy_protocol = \"v2\"\nproxy_protocol_from = [\"10.0.0.1\"]\n" + poolDB,
		[]string{`t.toml:5: listeners.web.allow: applies only to protocol = "tcp", not "http"`,
			`t.toml:6: listeners.web.proxy_protocol: applies only to protocol = "tcp", not "http"`,
			`t.toml:7: listeners.web.proxy_protocol_from: applies only to protocol = "tcp", not "http"`}},
	{"bad limits", httpHead + "pool = \"db\"\nmax_header_bytes = 10\nfail_statuses = [200]\n" + poolDB,
		[]string{"t.toml:5: listeners.web.max_header_bytes: must be 1024..1048576, not 10",
			"t.toml:6: listeners.web.fail_statuses: entry 0: want a status from 400 to 599, not 200"}},
}

func TestParseBadHTTP(t *testing.T) {
	for _, tc := range badHTTPConfigs {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFake(tc.toml)
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("got %v, want Errors", err)
			}
			wantContains(t, err.Error(), tc.want...)
			if len(errs) != len(tc.want) {
				t.Errorf("%d errors, want %d:\n%v", len(errs), len(tc.want), err)
			}
		})
	}
}

// httpFieldsOK reports whether an HTTP listener's fields are what Parse
// promises: limits in range, and every route reachable with a known end.
func httpFieldsOK(l Listener) bool {
	h := l.HTTP
	if h == nil || l.ConnectTimeout <= 0 || l.IdleTimeout <= 0 || l.HalfClosedTimeout != 0 || l.MaxConnections < 0 ||
		h.ReadHeaderTimeout <= 0 || h.ResponseTimeout < 0 || h.BackendIdleTimeout <= 0 || h.MaxBodyBytes < 0 ||
		h.MaxHeaderBytes < 1024 || h.MaxHeaderBytes > maxHeaderBytes || h.MaxIdlePerBackend < 1 ||
		h.MaxURLBytes < 256 || h.MaxURLBytes > maxHeaderBytes || h.MaxRequestsPerConnection < 0 {
		return false
	}
	if len(h.Routes) == 0 && l.Pool == "" {
		return false
	}
	for i, r := range h.Routes {
		for _, e := range h.Routes[:i] {
			if e.Covers(&r.Match) {
				return false
			}
		}
		switch r.Kind {
		case route.Forward:
			if r.Pool == "" {
				return false
			}
		case route.Redirect:
			if r.Status < 300 || r.Status > 399 || (r.Location == "") != r.HTTPS {
				return false
			}
		case route.Respond:
			if r.Status < 200 || r.Status > 599 {
				return false
			}
		}
	}
	return true
}

func TestLoadL7Example(t *testing.T) {
	cfg, err := Load("../examples/l7.toml")
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Listeners[0]
	if l.Protocol != HTTP || len(l.HTTP.Routes) != 8 || !cfg.Pool("grpc").H2C || cfg.Cache("static") == nil {
		t.Errorf("examples/l7.toml read as %+v", l)
	}
}
