package config

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"sluice/internal/access"
	"sluice/internal/proxyheader"
)

func TestParseClientKeys(t *testing.T) {
	cfg, err := parseFake(`
[listeners.edge]
bind = ":443"
pool = "web"
proxy_protocol = "any"
proxy_protocol_from = ["10.0.0.0/8", "2001:db8::7"]
proxy_protocol_timeout = "2s"
allow = ["0.0.0.0/0", "::/0"]
deny = ["192.0.2.0/24", "198.51.100.9"]
max_connections_per_client = 50
new_connections_per_client = "600/m"
[listeners.dns]
bind = ":53"
protocol = "udp"
pool = "dns"
proxy_protocol = "v2"
proxy_protocol_from = ["10.1.0.0/16"]
new_connections_per_client = "20/s"
[pools.web]
send_proxy = "v1"
[[pools.web.backends]]
address = "10.0.0.3:80"
[pools.dns]
send_proxy = "v2"
[[pools.dns.backends]]
address = "10.0.0.4:53"
`)
	if err != nil {
		t.Fatal(err)
	}
	dns, edge := cfg.Listeners[0], cfg.Listeners[1]
	p := netip.MustParsePrefix
	if edge.ProxyProtocol != proxyheader.Any || edge.ProxyProtocolTimeout != 2*time.Second ||
		!reflect.DeepEqual(edge.ProxyProtocolFrom, []netip.Prefix{p("10.0.0.0/8"), p("2001:db8::7/128")}) ||
		!reflect.DeepEqual(edge.Allow, []netip.Prefix{p("0.0.0.0/0"), p("::/0")}) ||
		!reflect.DeepEqual(edge.Deny, []netip.Prefix{p("192.0.2.0/24"), p("198.51.100.9/32")}) ||
		edge.MaxConnectionsPerClient != 50 || edge.NewConnectionsPerClient != (access.Rate{N: 600, Per: time.Minute}) {
		t.Errorf("edge = %+v", edge)
	}
	if dns.ProxyProtocol != proxyheader.V2 || dns.ProxyProtocolTimeout != 0 ||
		dns.NewConnectionsPerClient != (access.Rate{N: 20, Per: time.Second}) {
		t.Errorf("dns = %+v", dns)
	}
	if cfg.Pool("web").SendProxy != proxyheader.V1 || cfg.Pool("dns").SendProxy != proxyheader.V2 {
		t.Errorf("send_proxy: web %v, dns %v", cfg.Pool("web").SendProxy, cfg.Pool("dns").SendProxy)
	}
}

func TestParseProxyTimeoutDefault(t *testing.T) {
	cfg, err := parseFake("[listeners.pg]\nbind = \":1\"\npool = \"db\"\nproxy_protocol = \"v2\"\nproxy_protocol_from = [\"127.0.0.1\"]\n" + poolDB)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Listeners[0].ProxyProtocolTimeout; got != defaultProxyProtocolTimeout {
		t.Errorf("proxy_protocol_timeout = %v, want the default %v", got, defaultProxyProtocolTimeout)
	}
}

// badClientConfigs are the client keys' refusals, each with its line.
var badClientConfigs = []struct {
	name string
	toml string
	want []string
}{
	{"proxy without from", "[listeners.pg]\nbind = \":1\"\npool = \"db\"\nproxy_protocol = \"v1\"\n" + poolDB,
		[]string{"t.toml:4: listeners.pg.proxy_protocol: needs proxy_protocol_from"}},
	{"proxy version", "[listeners.pg]\nbind = \":1\"\npool = \"db\"\nproxy_protocol = \"v3\"\nproxy_protocol_from = [\"10.0.0.1\"]\n" + poolDB,
		[]string{`t.toml:4: listeners.pg.proxy_protocol: unknown PROXY protocol version "v3": want "v1", "v2" or "any"`}},
	{"from without proxy", "[listeners.pg]\nbind = \":1\"\npool = \"db\"\nproxy_protocol_from = [\"10.0.0.1\"]\nproxy_protocol_timeout = \"1s\"\n" + poolDB,
		[]string{"t.toml:4: listeners.pg.proxy_protocol_from: applies only with proxy_protocol set",
			"t.toml:5: listeners.pg.proxy_protocol_timeout: applies only with proxy_protocol set"}},
	{"proxy timeout zero", "[listeners.pg]\nbind = \":1\"\npool = \"db\"\nproxy_protocol = \"v1\"\nproxy_protocol_from = [\"10.0.0.1\"]\nproxy_protocol_timeout = \"0s\"\n" + poolDB,
		[]string{"t.toml:6: listeners.pg.proxy_protocol_timeout: must be greater than zero"}},
	{"udp v1", "[listeners.dns]\nbind = \":53\"\nprotocol = \"udp\"\npool = \"db\"\nproxy_protocol = \"any\"\nproxy_protocol_from = [\"10.0.0.1\"]\n" + poolDB,
		[]string{`t.toml:5: listeners.dns.proxy_protocol: UDP carries only v2 PROXY headers: want "v2", not "any"`}},
	{"udp timeout", "[listeners.dns]\nbind = \":53\"\nprotocol = \"udp\"\npool = \"db\"\nproxy_protocol = \"v2\"\nproxy_protocol_from = [\"10.0.0.1\"]\nproxy_protocol_timeout = \"1s\"\n" + poolDB,
		[]string{`t.toml:7: listeners.dns.proxy_protocol_timeout: applies only to protocol = "tcp", not "udp"`}},
	{"udp max per client", "[listeners.dns]\nbind = \":53\"\nprotocol = \"udp\"\npool = \"db\"\nmax_connections_per_client = 5\n" + poolDB,
		[]string{`t.toml:5: listeners.dns.max_connections_per_client: applies only to protocol = "tcp"`}},
	{"udp pool v1", "[listeners.dns]\nbind = \":53\"\nprotocol = \"udp\"\npool = \"db\"\n[pools.db]\nsend_proxy = \"v1\"\n[[pools.db.backends]]\naddress = \"10.0.0.3:53\"\n",
		[]string{`t.toml:4: listeners.dns.pool: pool "db" has send_proxy = "v1", which UDP cannot carry: use "v2"`}},
	{"cidr host bits", "[listeners.pg]\nbind = \":1\"\npool = \"db\"\nallow = [\"10.0.0.0/8\", \"10.1.2.3/16\"]\n" + poolDB,
		[]string{`t.toml:4: listeners.pg.allow: entry 1: "10.1.2.3/16" has host bits set: did you mean "10.1.0.0/16"?`}},
	{"cidr garbage", "[listeners.pg]\nbind = \":1\"\npool = \"db\"\ndeny = [\"10.0.0.0/33\", \"example.com\", 5]\n" + poolDB,
		[]string{`t.toml:4: listeners.pg.deny: entry 0: "10.0.0.0/33": want a CIDR`,
			`t.toml:4: listeners.pg.deny: entry 1: "example.com": want a CIDR`,
			"t.toml:4: listeners.pg.deny: entry 2 must be a string, not an integer"}},
	{"cidr zone", "[listeners.pg]\nbind = \":1\"\npool = \"db\"\ndeny = [\"fe80::1%eth0\"]\n" + poolDB,
		[]string{`t.toml:4: listeners.pg.deny: entry 0: "fe80::1%eth0": want a CIDR`}},
	{"cidr not array", "[listeners.pg]\nbind = \":1\"\npool = \"db\"\nallow = \"10.0.0.0/8\"\n" + poolDB,
		[]string{`t.toml:4: listeners.pg.allow: must be an array of CIDRs, such as ["10.0.0.0/8", "2001:db8::/32"], not a string`}},
	{"cidr empty", "[listeners.pg]\nbind = \":1\"\npool = \"db\"\nproxy_protocol = \"v2\"\nproxy_protocol_from = []\n" + poolDB,
		[]string{"t.toml:5: listeners.pg.proxy_protocol_from: is empty: list at least one CIDR"}},
	{"per client range", "[listeners.pg]\nbind = \":1\"\npool = \"db\"\nmax_connections_per_client = -1\n" + poolDB,
		[]string{"t.toml:4: listeners.pg.max_connections_per_client: must be 0..1000000, not -1"}},
	{"rate garbage", "[listeners.pg]\nbind = \":1\"\npool = \"db\"\nnew_connections_per_client = \"20/d\"\n" + poolDB,
		[]string{`t.toml:4: listeners.pg.new_connections_per_client: invalid rate "20/d": the unit must be s, m or h`}},
	{"rate number", "[listeners.pg]\nbind = \":1\"\npool = \"db\"\nnew_connections_per_client = 20\n" + poolDB,
		[]string{"t.toml:4: listeners.pg.new_connections_per_client: must be a string, not an integer"}},
	{"send proxy any", "[pools.db]\nsend_proxy = \"any\"\n[[pools.db.backends]]\naddress = \"10.0.0.3:5432\"\n" + listenerPG,
		[]string{`t.toml:2: pools.db.send_proxy: a pool sends one version: want "v1" or "v2", not "any"`}},
	{"send proxy other", "[pools.db]\nsend_proxy = true\n[[pools.db.backends]]\naddress = \"10.0.0.3:5432\"\n" + listenerPG,
		[]string{"t.toml:2: pools.db.send_proxy: must be a string, not a boolean"}},
}

func TestParseBadClientKeys(t *testing.T) {
	for _, tc := range badClientConfigs {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseFake(tc.toml)
			if err == nil {
				t.Fatalf("parsed without error: %+v", cfg)
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T is not Errors: %v", err, err)
			}
			wantContains(t, err.Error(), tc.want...)
		})
	}
}

// clientFieldsOK checks the client keys' invariants for the fuzz test.
func clientFieldsOK(l Listener) bool {
	masked := func(ps []netip.Prefix) bool {
		for _, p := range ps {
			if p != p.Masked() {
				return false
			}
		}
		return true
	}
	proxy := l.ProxyProtocol != 0
	return proxy == (len(l.ProxyProtocolFrom) > 0) &&
		(l.ProxyProtocolTimeout > 0) == (proxy && l.Protocol == TCP) &&
		(l.Protocol == TCP || l.ProxyProtocol == 0 || l.ProxyProtocol == proxyheader.V2) &&
		(l.Protocol == TCP || l.MaxConnectionsPerClient == 0) &&
		masked(l.ProxyProtocolFrom) && masked(l.Allow) && masked(l.Deny) &&
		l.MaxConnectionsPerClient >= 0 && l.NewConnectionsPerClient.N >= 0
}

func TestLoadTwoTierExample(t *testing.T) {
	edge, err := Load("../examples/two-tier-edge.toml")
	if err != nil {
		t.Fatal(err)
	}
	app, err := Load("../examples/two-tier-app.toml")
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, edge)
	checkInvariants(t, app)
	if edge.Pools[0].SendProxy != proxyheader.V2 || app.Listeners[0].ProxyProtocol != proxyheader.V2 {
		t.Error("the edge does not send what the app tier takes")
	}
	// The edge's pool is the app tier; the app tier trusts the edge.
	trusted := access.NewSet(app.Listeners[0].ProxyProtocolFrom)
	for _, b := range edge.Pools[0].Backends {
		if b.Address.Port() != app.Listeners[0].Bind.Port() {
			t.Errorf("edge backend %v is not the app tier's port %d", b.Address, app.Listeners[0].Bind.Port())
		}
	}
	if !trusted.Contains(netip.MustParseAddr("192.0.2.10")) {
		t.Error("the app tier does not trust the edge's address")
	}
}
