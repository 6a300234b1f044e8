package config

import (
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"regexp"
	"slices"

	"sluice/internal/pool"
	"sluice/internal/proxyheader"
)

var nameRE = regexp.MustCompile(fmt.Sprintf(`^[A-Za-z0-9_.-]{1,%d}$`, maxNameLen))

// names returns the tables under key k of t (listeners or pools) in name
// order, reporting bad names and non-tables; empty is true if k is absent
// or an empty table.
func (t *table) names(k string) (out []*table, empty bool) {
	if !t.has(k) {
		return nil, true
	}
	all := t.table(k)
	if all == nil {
		return nil, false
	}
	for _, name := range sortedKeys(all.keys) {
		if !nameRE.MatchString(name) {
			all.errorf(name, "name must be 1..%d characters of A-Z a-z 0-9 _ . -", maxNameLen)
		}
		if sub := all.table(name); sub != nil {
			out = append(out, sub)
		}
	}
	return out, len(all.keys) == 0
}

func (d *decoder) pools(top *table) []Pool {
	var pools []Pool
	tables, _ := top.names("pools")
	for _, t := range tables {
		p := d.pool(t)
		if p.SendProxy == proxyheader.V1 {
			d.sendsV1[p.Name] = true
		}
		pools = append(pools, p)
	}
	return pools
}

func (d *decoder) pool(t *table) Pool {
	p := defaultPool(t.name)
	t.allow("balance", "hash_key", "table_size", "retries", "backends",
		"on_down", "slow_start", "passive_failures", "passive_backoff", "health", "discover", "send_proxy", "h2c", "tls",
		"drain_rate", "keepalive_idle", "keepalive_interval", "keepalive_count")
	t.keepAlive(&p.KeepAlive)
	t.boolean("h2c", &p.H2C)
	d.poolDrainRate(t, &p)
	d.poolTLS(t, &p)
	balanceOK := t.text("balance", &p.Balance) || !t.has("balance")
	t.integer("retries", 0, maxRetries, &p.Retries)
	t.poolHealth(&p)
	t.shareTLS(&p)
	t.sendProxy(&p)
	if p.Discover = t.discover(); !t.has("discover") {
		p.Backends = d.backends(t, p.Health)
	}
	if balanceOK { // else the errors below would only echo the bad balance
		t.maglev(&p)
	}
	return p
}

// maglev checks and fills the keys that apply only to Maglev.
func (t *table) maglev(p *Pool) {
	if p.Balance != pool.Maglev {
		for _, k := range []string{"hash_key", "table_size"} {
			if t.has(k) {
				t.errorf(k, "applies only to balance = \"maglev\", not %q", p.Balance)
			}
		}
		return
	}
	t.text("hash_key", &p.HashKey)
	p.TableSize = defaultTableSize
	if !t.integer("table_size", 1, maxTableSize, &p.TableSize) && t.has("table_size") {
		return
	}
	switch {
	case !isPrime(p.TableSize):
		t.errorf("table_size", "must be a prime number, such as 65537 or 655373, not %d", p.TableSize)
	case p.TableSize < len(p.Backends):
		t.errorf("table_size", "%d is less than the number of backends (%d)", p.TableSize, len(p.Backends))
	}
}

func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	for i := 2; i*i <= n; i++ {
		if n%i == 0 {
			return false
		}
	}
	return true
}

// backends reads the [[pools.NAME.backends]] entries of pool table pt,
// whose health checks, if any, are ph.
func (d *decoder) backends(pt *table, ph *Health) []Backend {
	prim, ok := pt.keys["backends"]
	if !ok {
		pt.errorf("backends", "no backends: add at least one [[%s.backends]] table", pt.path)
		return nil
	}
	entries, ok := tableArray(&d.md, prim)
	if !ok {
		pt.errorf("backends", "must be an array of tables, such as [[%s.backends]]", pt.path)
		return nil
	}
	if len(entries) == 0 {
		pt.errorf("backends", "no backends: add at least one [[%s.backends]] table", pt.path)
		return nil
	}
	seen := make(map[netip.AddrPort]int, len(entries))
	out := make([]Backend, len(entries))
	for i, keys := range entries {
		t := &table{d: d, path: fmt.Sprintf("%s.backends[%d]", pt.path, i), keys: keys,
			node: pt.node.key("backends").elem(i)}
		out[i] = defaultBackend()
		t.allow("address", "weight", "backup", "state", "health")
		t.required("address")
		t.integer("weight", 1, maxWeight, &out[i].Weight)
		if s, ok := t.str("address"); ok {
			a, err := parseAddrPort(s, false)
			if err != nil {
				t.errorf("address", "%v", err)
			} else if j, dup := seen[a]; dup {
				t.errorf("address", "%s is already backends[%d]", a, j)
			} else {
				seen[a] = i
				out[i].Address = a
			}
		}
		d.backendHealth(t, i, ph, &out[i])
	}
	return out
}

// listeners reads the [listeners.NAME] tables; pools are the names under
// [pools], sorted, valid or not, so a listener is not blamed for a broken
// pool.
func (d *decoder) listeners(top *table, pools []string) []Listener {
	tables, empty := top.names("listeners")
	if empty {
		top.errorf("listeners", "no listeners: add at least one [listeners.NAME] table")
	}
	out := make([]Listener, len(tables))
	ports := map[protoPort]*portBinds{}
	for i, t := range tables {
		out[i] = d.listener(t, pools)
		a := out[i].Bind
		if !a.IsValid() {
			continue
		}
		pp := protoPort{out[i].Protocol.socket(), a.Port()}
		if ports[pp] == nil {
			ports[pp] = &portBinds{addrs: map[netip.Addr]int{}, wildcard: -1}
		}
		// Against the first earlier listener it conflicts with: one error
		// per listener, however many share its port.
		if j, ok := ports[pp].conflict(a.Addr(), i); ok {
			b := out[j]
			t.errorf("bind", "%s conflicts with %s (%s)", a, joinKey(joinKey("listeners", b.Name), "bind"), b.Bind)
		}
	}
	return out
}

// protoPort is a protocol and a port, which listeners' binds conflict
// within (see bindsConflict).
type protoPort struct {
	proto Protocol
	port  uint16
}

// portBinds is the listeners bound to one protocol and port so far, by
// index, so that conflicts are found without comparing every pair.
type portBinds struct {
	first    int                // the first listener on the port
	wildcard int                // the first with a wildcard address, or -1
	addrs    map[netip.Addr]int // the first on each address
}

// conflict records listener i bound to addr and returns the first earlier
// listener it conflicts with.
func (p *portBinds) conflict(addr netip.Addr, i int) (int, bool) {
	j, conflict := p.addrs[addr]
	switch {
	case len(p.addrs) > 0 && addr.IsUnspecified():
		j, conflict = p.first, true
	case p.wildcard >= 0 && (!conflict || p.wildcard < j):
		j, conflict = p.wildcard, true
	}
	if len(p.addrs) == 0 {
		p.first = i
	}
	if _, ok := p.addrs[addr]; !ok {
		p.addrs[addr] = i
	}
	if addr.IsUnspecified() && p.wildcard < 0 {
		p.wildcard = i
	}
	return j, conflict
}

func (d *decoder) listener(t *table, pools []string) Listener {
	var proto Protocol
	protoOK := t.text("protocol", &proto) || !t.has("protocol")
	l := defaultListener(t.name, proto)
	t.allowListener(proto, protoOK)
	t.required("bind")
	// An HTTP listener's pool is its default route, as an SNI-routed TCP
	// listener's is its pool for other names.
	if proto != HTTP && !(proto == TCP && t.has("sni_routes")) {
		t.required("pool")
	}
	if s, ok := t.str("bind"); ok {
		l.BindText = s
		d.bind(t, &l)
	}
	if s, ok := t.str("pool"); ok {
		l.Pool = s
		if _, found := slices.BinarySearch(pools, s); !found {
			t.errorf("pool", "no pool %s in this file", quote(s))
		}
		if p := d.parsedPool(s); proto == UDP && p != nil && p.TLS != nil {
			t.errorf("pool", "pool %s has [tls], which a UDP listener cannot speak", quote(s))
		}
	}
	t.integer("sockets", 0, maxSockets, &l.Sockets)
	if l.Sockets == 0 {
		l.Sockets = defaultSockets()
	}
	t.clientKeys(&l)
	d.announce(t, &l)
	if proto == UDP {
		t.udpKeys(&l)
		if d.sendsV1[l.Pool] {
			t.errorf("pool", "pool %q has send_proxy = \"v1\", which UDP cannot carry: use \"v2\"", l.Pool)
		}
		return l
	}
	if proto == HTTP {
		d.httpKeys(t, &l, pools)
		return l
	}
	t.integer("max_connections", 0, math.MaxInt, &l.MaxConnections)
	t.duration("connect_timeout", &l.ConnectTimeout, true)
	t.duration("idle_timeout", &l.IdleTimeout, true)
	t.duration("half_closed_timeout", &l.HalfClosedTimeout, true)
	t.keepAlive(&l.KeepAlive)
	d.sniKeys(t, &l, pools)
	d.tcpListenerTLS(t, &l)
	return l
}

func (d *decoder) bind(t *table, l *Listener) {
	var h hostAddrs
	if isTemplate(l.BindText) {
		var err error
		if h, err = d.hostAddrs(); err != nil {
			t.errorf("bind", "%v", err)
			return
		}
	}
	ap, err := parseBind(l.BindText, h)
	if err != nil {
		t.errorf("bind", "%v", err)
		return
	}
	l.Bind = ap
}

// level sets *dst from a level name such as "info" or "warn".
func (t *table) level(k string, dst *slog.Level) {
	s, ok := t.str(k)
	if ok && dst.UnmarshalText([]byte(s)) != nil {
		t.errorf(k, "unknown level %s: want debug, info, warn or error", quote(s))
	}
}
