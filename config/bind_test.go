package config

import (
	"net/netip"
	"testing"
)

func TestParseBind(t *testing.T) {
	for _, tc := range []struct {
		name, bind string
		want       string // an AddrPort, or "" for an error
		err        string
	}{
		{"ipv4", "127.0.0.1:6432", "127.0.0.1:6432", ""},
		{"ipv6", "[::1]:6432", "[::1]:6432", ""},
		{"wildcard", ":6432", "[::]:6432", ""},
		{"v4 wildcard", "0.0.0.0:6432", "0.0.0.0:6432", ""},
		{"mapped", "[::ffff:10.0.0.1]:80", "10.0.0.1:80", ""},
		{"host name", "localhost:80", "", "host names are not resolved; give an IP address"},
		{"port 0", ":0", "", `port "0": want 1..65535`},
		{"port too big", ":65536", "", `port "65536": want 1..65535`},
		{"private ip, default interface first", "{{ GetPrivateIP }}:5432", "10.0.0.5:5432", ""},
		{"interface ip", `{{ GetInterfaceIP "eth0" }}:5432`, "10.0.0.5:5432", ""},
		{"interface ipv6 unbracketed", `{{ GetInterfaceIP "eth1" }}:5432`, "[fd00::5]:5432", ""},
		{"interface ipv6 bracketed", `[{{ GetInterfaceIP "eth1" }}]:5432`, "[fd00::5]:5432", ""},
		{"public ip", "{{ GetPublicIP }}:443", "93.184.216.34:443", ""},
		{"pipeline on the dot", `{{ . | include "name" "^lo$" | include "type" "IPv4" | attr "address" }}:80`, "127.0.0.1:80", ""},
		{"all interfaces source", `{{ GetAllInterfaces | include "name" "docker0" | attr "address" }}:80`, "172.17.0.1:80", ""},
		{"no such interface", `{{ GetInterfaceIP "wlan0" }}:5432`, "", `template resolved to no address (":5432")`},
		{"several", `{{ GetInterfaceIPs "lo" }}:5432`, "", `template resolved to 2 addresses ("127.0.0.1 ::1:5432")`},
		{"no port", `{{ GetInterfaceIP "eth0" }}`, "", `template resolved to "10.0.0.5": want an IP address and a port`},
		{"template port 0", `{{ GetInterfaceIP "eth0" }}:0`, "", `template resolved to "10.0.0.5:0": port "0"`},
		{"unknown function", "{{ GetMagicIP }}:80", "", `parsing template:`},
		{"range", "{{ range 1000000000000 }}{{ end }}10.0.0.1:80", "", "range and template actions are not allowed"},
		{"recursion", `{{ define "a" }}{{ template "a" . }}{{ end }}{{ template "a" . }}`, "", "range and template actions are not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseBind(tc.bind, fakeHost())
			if tc.err != "" {
				if err == nil {
					t.Fatalf("got %v, want an error with %q", got, tc.err)
				}
				wantContains(t, err.Error(), tc.err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := netip.MustParseAddrPort(tc.want); got != want {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

func TestBindsConflict(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"127.0.0.1:80", "127.0.0.1:80", true},
		{"127.0.0.1:80", "127.0.0.2:80", false},
		{"127.0.0.1:80", "127.0.0.1:81", false},
		{"0.0.0.0:80", "10.0.0.1:80", true},
		{"[::]:80", "10.0.0.1:80", true},
		{"[::1]:80", "[::]:80", true},
		{"[::]:80", "[::]:81", false},
	} {
		a, b := netip.MustParseAddrPort(tc.a), netip.MustParseAddrPort(tc.b)
		if got := bindsConflict(a, b); got != tc.want || bindsConflict(b, a) != tc.want {
			t.Errorf("bindsConflict(%v, %v) = %v, want %v", a, b, got, tc.want)
		}
	}
}
