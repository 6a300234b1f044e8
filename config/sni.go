package config

import (
	"fmt"
	"slices"
	"strings"
)

// SNIRoute is one [[listeners.NAME.sni_routes]] entry of a TCP listener:
// TLS connections whose ClientHello names one of Names go to Pool,
// undecrypted (SNI passthrough).
type SNIRoute struct {
	// Names are exact host names and one-label wildcards ("*.example.com"),
	// lower case, without a trailing dot.
	Names []string
	// Pool is a pool of this file.
	Pool string
}

// sniKeys reads a TCP listener's sni_routes and client_hello_timeout.
func (d *decoder) sniKeys(t *table, l *Listener, pools []string) {
	if !t.has("sni_routes") {
		if t.has("client_hello_timeout") {
			t.errorf("client_hello_timeout", "is used only with sni_routes")
		}
		return
	}
	l.ClientHelloTimeout = defaultClientHelloTimeout
	t.duration("client_hello_timeout", &l.ClientHelloTimeout, true)
	if l.ProxyProtocol != 0 {
		t.errorf("sni_routes", "cannot be combined with proxy_protocol yet")
	}
	entries, ok := tableArray(&d.md, t.keys["sni_routes"])
	if !ok || len(entries) == 0 {
		t.errorf("sni_routes", "must be an array of tables with names and pool, such as [[%s.sni_routes]]", t.path)
		return
	}
	nodes := t.node.key("sni_routes")
	seen := map[string]int{}
	for i, keys := range entries {
		rt := &table{d: d, path: fmt.Sprintf("%s.sni_routes[%d]", t.path, i), keys: keys, node: nodes.elem(i)}
		rt.allow("names", "pool")
		rt.required("names", "pool")
		var r SNIRoute
		for _, n := range rt.stringList("names") {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			host := strings.TrimPrefix(n, "*.")
			if !isDNSName(host) || strings.Contains(host, "*") {
				rt.errorf("names", "%s is not a host name or a wildcard such as \"*.example.com\"", quote(n))
				continue
			}
			if j, dup := seen[n]; dup {
				rt.errorf("names", "%s is routed by sni_routes[%d] already", quote(n), j)
				continue
			}
			seen[n] = i
			r.Names = append(r.Names, n)
		}
		if rt.str2("pool", &r.Pool) {
			d.sniPool(rt, r.Pool, pools)
		}
		l.SNIRoutes = append(l.SNIRoutes, r)
	}
}

// sniPool checks a pool an SNI route names: the per-pool behaviours a TCP
// listener applies to its own pool only are refused on it.
func (d *decoder) sniPool(rt *table, name string, pools []string) {
	if _, found := slices.BinarySearch(pools, name); !found {
		rt.errorf("pool", "no pool %s in this file", quote(name))
		return
	}
	p := d.parsedPool(name)
	switch {
	case p == nil:
	case p.TLS != nil:
		rt.errorf("pool", "pool %s has [tls]; passthrough sends the client's own TLS", quote(name))
	case p.SendProxy != 0:
		rt.errorf("pool", "pool %s has send_proxy, which SNI routes do not send yet", quote(name))
	case p.OnDown == OnDownClose:
		rt.errorf("pool", "pool %s has on_down = \"close\", which SNI routes do not apply yet", quote(name))
	}
}
