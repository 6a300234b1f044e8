package config

import (
	"net"
	"strings"
	"testing"

	sockaddr "github.com/hashicorp/go-sockaddr"
)

// Pieces of valid configuration, appended after a case's own lines so its
// line numbers start at 1.
const (
	poolDB = `
[pools.db]
[[pools.db.backends]]
address = "10.0.0.3:5432"
`
	listenerPG = `
[listeners.pg]
bind = "127.0.0.1:6432"
pool = "db"

`
)

// fakeHost is a host with a default route on eth0, a docker bridge, an
// IPv6-only eth1, a public address on eth2 and loopback; no network is
// touched.
func fakeHost() hostAddrs {
	up := net.FlagUp | net.FlagBroadcast
	return hostAddrs{defaultIf: "eth0", ifs: sockaddr.IfAddrs{
		ifAddr("lo", net.FlagUp|net.FlagLoopback, "127.0.0.1/8"),
		ifAddr("lo", net.FlagUp|net.FlagLoopback, "::1/128"),
		ifAddr("docker0", up, "172.17.0.1/16"),
		ifAddr("eth0", up, "10.0.0.5/24"),
		ifAddr("eth1", up, "fd00::5/64"),
		ifAddr("eth2", up, "93.184.216.34/24"),
	}}
}

func ifAddr(name string, flags net.Flags, cidr string) sockaddr.IfAddr {
	ip, err := sockaddr.NewIPAddr(cidr)
	if err != nil {
		panic(err)
	}
	return sockaddr.IfAddr{SockAddr: ip, Interface: net.Interface{Name: name, Flags: flags}}
}

// parseFake parses as Parse does, with bind templates resolved on fakeHost.
func parseFake(text string) (*Config, error) {
	return parseWith("t.toml", []byte(text), func() (hostAddrs, error) { return fakeHost(), nil })
}

// wantContains fails t unless s contains every one of want.
func wantContains(t *testing.T, s string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Errorf("missing %q in:\n%s", w, s)
		}
	}
}
