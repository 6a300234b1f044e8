package config

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

const bgpPeer = `
[[bgp.peers]]
address = "10.0.0.254"
as = 65000
`

func TestParseBGP(t *testing.T) {
	cfg, err := parseFake(`
[bgp]
local_as = 65001
router_id = "10.0.0.1"
withdraw_delay = "3s"
communities = ["65001:100", "0:65535"]
med = 20
[[bgp.peers]]
address = "10.0.0.254"
as = 65000
password = "s3cret"
hold_time = "9s"
connect_retry = "1s"
[[bgp.peers]]
address = "fd00::fe"
port = 1179
as = 65001
[listeners.web]
bind = "192.0.2.10:80"
pool = "db"
announce = ["192.0.2.10/32", "2001:db8::10"]
[listeners.any]
bind = ":81"
pool = "db"
announce = ["192.0.2.10/32"]
` + poolDB)
	if err != nil {
		t.Fatal(err)
	}
	want := &BGP{LocalAS: 65001, RouterID: netip.MustParseAddr("10.0.0.1"), WithdrawDelay: 3 * time.Second,
		Communities: []uint32{65001<<16 | 100, 65535}, MED: 20, HasMED: true,
		Peers: []BGPPeer{
			{Address: netip.MustParseAddr("10.0.0.254"), Port: 179, AS: 65000, Password: "s3cret", HoldTime: 9 * time.Second, ConnectRetry: time.Second},
			{Address: netip.MustParseAddr("fd00::fe"), Port: 1179, AS: 65001, HoldTime: 90 * time.Second, ConnectRetry: 5 * time.Second},
		}}
	if !reflect.DeepEqual(cfg.BGP, want) {
		t.Errorf("bgp:\n got %+v\nwant %+v", cfg.BGP, want)
	}
	wantAnn := []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32"), netip.MustParsePrefix("2001:db8::10/128")}
	if got := cfg.Listeners[1].Announce; !reflect.DeepEqual(got, wantAnn) {
		t.Errorf("announce %v, want %v", got, wantAnn)
	}
}

func TestParseBGPDefaults(t *testing.T) {
	cfg, err := parseFake("[bgp]\nlocal_as = 4200000000\nrouter_id = \"10.0.0.1\"\n" + bgpPeer + listenerPG + poolDB)
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.BGP
	if b.WithdrawDelay != 5*time.Second || b.HasMED || b.Communities != nil || b.LocalAS != 4200000000 ||
		b.Peers[0].HoldTime != 90*time.Second || b.Peers[0].Port != 179 {
		t.Errorf("defaults: %+v", b)
	}
	if cfg, _ := parseFake(listenerPG + poolDB); cfg.BGP != nil {
		t.Errorf("no [bgp] table gave %+v", cfg.BGP)
	}
}

func TestParseBGPBad(t *testing.T) {
	top := "[bgp]\nlocal_as = 65001\nrouter_id = \"10.0.0.1\"\n"
	for _, tc := range []struct {
		name, toml string
		want       []string
	}{
		{"missing keys", "[bgp]\n" + listenerPG + poolDB, []string{
			"t.toml:1: bgp.local_as: required key is missing", "bgp.router_id: required key is missing", "bgp.peers: required key is missing"}},
		{"unknown key", top + "asn = 1\n" + bgpPeer + listenerPG + poolDB, []string{"t.toml:4: bgp.asn: unknown key; allowed here: local_as, router_id"}},
		{"as zero", "[bgp]\nlocal_as = 0\nrouter_id = \"10.0.0.1\"\n" + bgpPeer + listenerPG + poolDB, []string{"t.toml:2: bgp.local_as: must be 1..4294967295, not 0"}},
		{"router id v6", "[bgp]\nlocal_as = 1\nrouter_id = \"fd00::1\"\n" + bgpPeer + listenerPG + poolDB, []string{`t.toml:3: bgp.router_id: "fd00::1": want an IPv4 address`}},
		{"community", top + "communities = [\"65536:1\", \"7\"]\n" + bgpPeer + listenerPG + poolDB, []string{
			`t.toml:4: bgp.communities: entry 0: "65536:1": want "AS:VALUE"`, `entry 1: "7"`}},
		{"med", top + "med = -1\n" + bgpPeer + listenerPG + poolDB, []string{"t.toml:4: bgp.med: must be 0..4294967295"}},
		{"peers not tables", top + "peers = [\"10.0.0.254\"]\n" + listenerPG + poolDB, []string{"t.toml:4: bgp.peers: must be an array of tables"}},
		{"peer keys", top + "[[bgp.peers]]\naddress = \"router\"\nas = 65000\nhold_time = \"2s\"\nconnect_retry = \"0.5s\"\nport = 0\nkey = 1\n" + listenerPG + poolDB, []string{
			`t.toml:5: bgp.peers[0].address: "router": want an IP address`,
			"t.toml:7: bgp.peers[0].hold_time: must be 3s..18h12m15s, not 2s",
			"t.toml:8: bgp.peers[0].connect_retry: must be whole seconds",
			"t.toml:9: bgp.peers[0].port: must be 1..65535",
			"t.toml:10: bgp.peers[0].key: unknown key"}},
		{"peer twice", top + bgpPeer + bgpPeer + listenerPG + poolDB, []string{"bgp.peers[1].address: 10.0.0.254 is already bgp.peers[0]"}},
		{"peer missing", top + "[[bgp.peers]]\nport = 179\n" + listenerPG + poolDB, []string{"t.toml:4: bgp.peers[0].address: required key is missing", "bgp.peers[0].as: required key is missing"}},
		{"password twice", top + bgpPeer + "password = \"a\"\npassword_file = \"/nonexistent\"\n" + listenerPG + poolDB, []string{"bgp.peers[0].password_file: give password or password_file, not both"}},
		{"announce without bgp", "[listeners.pg]\nbind = \"192.0.2.10:80\"\npool = \"db\"\nannounce = [\"192.0.2.10/32\"]\n" + poolDB,
			[]string{"t.toml:4: listeners.pg.announce: needs a [bgp] table"}},
		{"announce elsewhere", top + bgpPeer + "[listeners.pg]\nbind = \"192.0.2.10:80\"\npool = \"db\"\nannounce = [\"192.0.2.11/32\"]\n" + poolDB,
			[]string{"t.toml:11: listeners.pg.announce: no prefix contains the listener's bind address 192.0.2.10"}},
		{"announce host bits", top + bgpPeer + "[listeners.pg]\nbind = \":80\"\npool = \"db\"\nannounce = [\"192.0.2.10/24\"]\n" + poolDB,
			[]string{`listeners.pg.announce: entry 0: "192.0.2.10/24" has host bits set`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFake(tc.toml)
			if err == nil {
				t.Fatal("parsed; want an error")
			}
			wantContains(t, err.Error(), tc.want...)
		})
	}
}

func TestParseBGPWarnings(t *testing.T) {
	top := "[bgp]\nlocal_as = 65001\nrouter_id = \"10.0.0.1\"\n" + bgpPeer
	for _, tc := range []struct {
		name, toml, want string
	}{
		{"nothing announced", top + listenerPG + poolDB, "t.toml:1: bgp: no listener has announce"},
		{"IPv6 over IPv4 only", top + "[listeners.pg]\nbind = \":80\"\npool = \"db\"\nannounce = [\"2001:db8::10\"]\n" + poolDB,
			"t.toml:1: bgp: IPv6 prefixes are announced but no peer has an IPv6 address"},
		{"none", top + "[listeners.pg]\nbind = \":80\"\npool = \"db\"\nannounce = [\"192.0.2.10\"]\n" + poolDB, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseFake(tc.toml)
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.Warnings.Error()
			if len(cfg.Warnings) == 0 {
				got = ""
			}
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Errorf("warnings %q, want %q", got, tc.want)
			}
		})
	}
}
