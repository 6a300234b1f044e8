package config

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/BurntSushi/toml"

	"sluice/internal/access"
	"sluice/l7/route"
)

// HTTPListener is the part of a [listeners.NAME] table with protocol = "http"
// that only HTTP has.
type HTTPListener struct {
	// Routes are the [[listeners.NAME.routes]] entries in file order;
	// each one is reachable and names a pool of this file.
	Routes []route.Route
	// TrustedProxies are the peers whose X-Forwarded-* and Forwarded
	// headers are kept and appended to; empty means none.
	TrustedProxies []netip.Prefix
	// ReadHeaderTimeout bounds reading a request head; > 0.
	ReadHeaderTimeout time.Duration
	// ResponseTimeout bounds the wait for a backend's response head;
	// zero means none.
	ResponseTimeout time.Duration
	// MaxHeaderBytes caps a request head, 1024 to 1 MiB.
	MaxHeaderBytes int
	// MaxBodyBytes caps a request body; zero means no cap.
	MaxBodyBytes int64
	// MaxURLBytes caps a request target, 256 to 1 MiB.
	MaxURLBytes int
	// RequestsPerClient caps each client's requests (429 beyond); zero
	// means no cap.
	RequestsPerClient access.Rate
	// RequestsPerClientBurst is how many requests a client may make at
	// once, 1 to 1000000; zero means RequestsPerClient.N.
	RequestsPerClientBurst int
	// MaxRequestsPerConnection closes an HTTP/1.1 client connection after
	// this many requests; zero means no cap.
	MaxRequestsPerConnection int
	// FailStatuses are backend statuses (500 to 599) counted as failures
	// by passive checks; empty means none.
	FailStatuses []int
	// MaxIdlePerBackend is how many idle keep-alive connections to each
	// backend are kept, 1 to 100000.
	MaxIdlePerBackend int
	// BackendIdleTimeout closes a keep-alive connection to a backend idle
	// this long; > 0.
	BackendIdleTimeout time.Duration
}

// httpListenerKeys are the keys of a listener with protocol = "http",
// besides bind, protocol and pool.
var httpListenerKeys = []string{"sockets", "max_connections", "connect_timeout", "idle_timeout", "read_header_timeout",
	"response_timeout", "max_header_bytes", "max_body_bytes", "max_url_bytes", "max_requests_per_connection",
	"requests_per_client", "requests_per_client_burst", "trusted_proxies", "fail_statuses",
	"max_idle_per_backend", "backend_idle_timeout", "routes", "tls"}

// socket returns the protocol of p's listening sockets: an HTTP listener's
// are TCP sockets, so its bind conflicts with a TCP listener's.
func (p Protocol) socket() Protocol {
	if p == HTTP {
		return TCP
	}
	return p
}

// httpKeys reads the keys of an HTTP listener and its routes; pools are
// the names under [pools], sorted.
func (d *decoder) httpKeys(t *table, l *Listener, pools []string) {
	h := l.HTTP
	t.integer("max_connections", 0, math.MaxInt, &l.MaxConnections)
	t.duration("connect_timeout", &l.ConnectTimeout, true)
	t.duration("idle_timeout", &l.IdleTimeout, true)
	t.duration("read_header_timeout", &h.ReadHeaderTimeout, true)
	t.duration("response_timeout", &h.ResponseTimeout, false)
	t.duration("backend_idle_timeout", &h.BackendIdleTimeout, true)
	t.integer("max_header_bytes", 1024, maxHeaderBytes, &h.MaxHeaderBytes)
	var body int
	if t.integer("max_body_bytes", 0, math.MaxInt, &body) {
		h.MaxBodyBytes = int64(body)
	}
	t.integer("max_idle_per_backend", 1, 100000, &h.MaxIdlePerBackend)
	t.integer("max_url_bytes", 256, maxHeaderBytes, &h.MaxURLBytes)
	t.integer("max_requests_per_connection", 0, math.MaxInt, &h.MaxRequestsPerConnection)
	t.requestRate(&h.RequestsPerClient, &h.RequestsPerClientBurst)
	h.TrustedProxies = t.cidrList("trusted_proxies")
	h.FailStatuses = t.statuses("fail_statuses")
	l.TLS = d.listenerTLS(t, HTTP)
	nodes := t.node.key("routes")
	var valid []int // routes without errors, which alone are compared
	for i, keys := range d.routeEntries(t) {
		rt := &table{d: d, path: fmt.Sprintf("%s.routes[%d]", t.path, i), keys: keys, node: nodes.elem(i)}
		errs := len(d.errs)
		h.Routes = append(h.Routes, rt.route(i, pools))
		if len(d.errs) > errs {
			continue
		}
		if j := shadowedBy(h.Routes, valid); j >= 0 {
			d.errorf(rt.node.lineNo(), rt.path, "unreachable: %s.routes[%d]%s matches every request this route matches",
				t.path, j, atLine(nodes.elem(j).lineNo()))
		}
		valid = append(valid, i)
	}
	t.noSendProxy(l.Pool, h.Routes)
	if len(h.Routes) == 0 && !t.has("pool") {
		t.errorf("routes", "no routes and no pool: every request would be answered 404; "+
			"add [[%s.routes]] tables or a default pool", t.path)
	}
	if i := slices.IndexFunc(h.Routes, func(r route.Route) bool { return catchAll(&r.Match) }); i >= 0 && t.has("pool") {
		t.errorf("pool", "unreachable: routes[%d]%s matches every request, so no request is left for the default pool",
			i, atLine(nodes.elem(i).lineNo()))
	}
}

// requestRate reads requests_per_client and requests_per_client_burst, of
// a listener or a route.
func (t *table) requestRate(rate *access.Rate, burst *int) {
	t.text("requests_per_client", rate)
	t.integer("requests_per_client_burst", 1, 1000000, burst)
	if t.has("requests_per_client_burst") && !t.has("requests_per_client") {
		t.errorf("requests_per_client_burst", "applies only with requests_per_client set")
	}
}

// noSendProxy refuses pools with send_proxy behind an HTTP listener:
// connections to their backends are shared by requests of many clients,
// so no one PROXY header can name the client (X-Forwarded-For does).
func (t *table) noSendProxy(def string, routes []route.Route) {
	for _, p := range t.d.parsed {
		if p.SendProxy == 0 {
			continue
		}
		if p.Name == def {
			t.errorf("pool", "pool %s has send_proxy, which an HTTP listener cannot honour: its connections "+
				"to backends carry many clients' requests (X-Forwarded-For names each)", quote(p.Name))
		}
		for i, r := range routes {
			if r.Kind == route.Forward && r.Pool == p.Name {
				t.errorf("routes", "routes[%d]: pool %s has send_proxy, which an HTTP listener cannot honour: its "+
					"connections to backends carry many clients' requests (X-Forwarded-For names each)", i, quote(p.Name))
			}
		}
	}
}

// routeEntries returns the listener's [[routes]] entries.
func (d *decoder) routeEntries(t *table) []map[string]toml.Primitive {
	prim, ok := t.keys["routes"]
	if !ok {
		return nil
	}
	entries, ok := tableArray(&d.md, prim)
	if !ok {
		t.errorf("routes", "must be an array of tables, such as [[%s.routes]]", t.path)
		return nil
	}
	if len(entries) > maxRoutes {
		// Routes are tried in order: thousands would be a slow scan
		// per request, and the reachability check is quadratic.
		t.errorf("routes", "%d routes: at most %d", len(entries), maxRoutes)
		return nil
	}
	return entries
}

// shadowedBy returns the index of an earlier route among those at the
// indexes valid that matches every request the last route of rs matches,
// or -1.
func shadowedBy(rs []route.Route, valid []int) int {
	last := &rs[len(rs)-1].Match
	for _, j := range valid {
		if rs[j].Covers(last) {
			return j
		}
	}
	return -1
}

func catchAll(m *route.Match) bool {
	var zero route.Match
	return m.Covers(&zero)
}

func atLine(n int) string {
	if n <= 0 {
		return ""
	}
	return fmt.Sprintf(" (line %d)", n)
}

// stringList reads k as a string or an array of strings; nil if k is
// absent or wrong, which is then reported.
func (t *table) stringList(k string) []string {
	v, ok := t.value(k)
	if !ok {
		return nil
	}
	if s, ok := v.(string); ok {
		return []string{s}
	}
	items, ok := v.([]any)
	if !ok || len(items) == 0 {
		t.errorf(k, "must be a string or a non-empty array of strings, not %s", typeName(v))
		return nil
	}
	out := make([]string, 0, len(items))
	for i, item := range items {
		s, ok := item.(string)
		if !ok {
			t.errorf(k, "entry %d must be a string, not %s", i, typeName(item))
			return nil
		}
		out = append(out, s)
	}
	return out
}

// cidrList reads k as prefixes does, with IPv4-mapped IPv6 prefixes
// written as IPv4 ones: HTTP compares clients unmapped, so
// ::ffff:10.0.0.0/104 is 10.0.0.0/8.
func (t *table) cidrList(k string) []netip.Prefix {
	ps := t.prefixes(k)
	for i, p := range ps {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			ps[i] = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
	}
	return ps
}

// statuses reads k as an array of HTTP statuses from 400 to 599.
func (t *table) statuses(k string) []int {
	v, ok := t.value(k)
	if !ok {
		return nil
	}
	items, ok := v.([]any)
	if !ok {
		t.errorf(k, "must be an array of statuses, such as [502, 503, 504], not %s", typeName(v))
		return nil
	}
	var out []int
	for i, item := range items {
		n, ok := item.(int64)
		if !ok || n < 400 || n > 599 {
			t.errorf(k, "entry %d: want a status from 400 to 599, not %v", i, item)
			return nil
		}
		out = append(out, int(n))
	}
	return out
}
