package config

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseDiscover(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want Discover
	}{
		{"srv defaults", "[pools.db.discover]\nsrv = \"_pg._tcp.db.internal\"\n",
			Discover{SRV: "_pg._tcp.db.internal", Interval: 30 * time.Second}},
		{"host every key", "[pools.db.discover]\nhost = \"db.internal.:5432\"\nresolver = \"[::1]:5353\"\ninterval = \"5s\"\n",
			Discover{Host: "db.internal.", Port: 5432, Resolver: netip.MustParseAddrPort("[::1]:5353"), Interval: 5 * time.Second}},
		{"resolver without port", "[pools.db.discover]\nsrv = \"_dns._udp.test\"\nresolver = \"10.0.0.53\"\n",
			Discover{SRV: "_dns._udp.test", Resolver: netip.MustParseAddrPort("10.0.0.53:53"), Interval: 30 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseFake(listenerPG + tt.toml)
			if err != nil {
				t.Fatal(err)
			}
			p := cfg.Pool("db")
			if p.Discover == nil || !reflect.DeepEqual(*p.Discover, tt.want) || len(p.Backends) != 0 {
				t.Errorf("discover %+v, backends %v; want %+v and none", p.Discover, p.Backends, tt.want)
			}
		})
	}
}

func TestParseDiscoverErrors(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want []string
	}{
		{"with backends", "[pools.db.discover]\nsrv = \"_pg._tcp.x\"\n[[pools.db.backends]]\naddress = \"10.0.0.1:1\"\n",
			[]string{"t.toml:8: pools.db.backends: give backends or a discover table, not both"}},
		{"neither", "[pools.db.discover]\ninterval = \"5s\"\n",
			[]string{"t.toml:6: pools.db.discover.srv: required key is missing: give srv"}},
		{"both", "[pools.db.discover]\nsrv = \"_pg._tcp.x\"\nhost = \"x:1\"\n",
			[]string{"t.toml:8: pools.db.discover.host: give srv or host, not both"}},
		{"unknown key", "[pools.db.discover]\nsrv = \"_pg._tcp.x\"\nttl = 5\n",
			[]string{"t.toml:8: pools.db.discover.ttl: unknown key; allowed here: srv, host, resolver, interval"}},
		{"host without port", "[pools.db.discover]\nhost = \"db.internal\"\n",
			[]string{`t.toml:7: pools.db.discover.host: "db.internal": want NAME:PORT`}},
		{"host port zero", "[pools.db.discover]\nhost = \"db:0\"\n", []string{`port "0": want 1..65535`}},
		{"host is an address", "[pools.db.discover]\nhost = \"10.0.0.1:5432\"\n",
			[]string{`"10.0.0.1:5432" is an address: list it as a backend instead`}},
		{"bad name", "[pools.db.discover]\nsrv = \"a..b\"\n", []string{`"a..b" is not a DNS name`}},
		{"long label", "[pools.db.discover]\nsrv = \"" + strings.Repeat("y", 64) + ".test\"\n",
			[]string{"labels must be at most 63 bytes"}},
		{"bad resolver", "[pools.db.discover]\nsrv = \"_pg._tcp.x\"\nresolver = \"ns1.example:53\"\n",
			[]string{"t.toml:8: pools.db.discover.resolver:", "host names are not resolved"}},
		{"short interval", "[pools.db.discover]\nsrv = \"_pg._tcp.x\"\ninterval = \"100ms\"\n",
			[]string{"t.toml:8: pools.db.discover.interval: must be at least 1s, not 100ms"}},
		{"not a table", "[pools.db]\ndiscover = \"srv:_pg._tcp.x\"\n",
			[]string{"t.toml:7: pools.db.discover: must be a table, not a string"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseFake(listenerPG + tt.toml)
			wantContains(t, fmtErr(err), tt.want...)
		})
	}
}

func TestDiscoveredHealth(t *testing.T) {
	addr := netip.MustParseAddrPort("10.0.0.7:5432")
	p := Pool{}
	if p.DiscoveredHealth(addr) != nil {
		t.Error("health for a pool without checks")
	}
	p.Health = &Health{Interval: time.Second}
	if h := p.DiscoveredHealth(addr); h.Address != addr || h.Interval != time.Second || p.Health.Address.IsValid() {
		t.Errorf("health %+v; the pool's is now %+v", h, p.Health)
	}
	p.Health.Port = 8008
	if h := p.DiscoveredHealth(addr); h.Address != netip.MustParseAddrPort("10.0.0.7:8008") {
		t.Errorf("checked at %v, want the check port", h.Address)
	}
}
