package config

import (
	"errors"
	"net/netip"
	"reflect"
	"runtime"
	"testing"
	"time"
)

const listenerDNS = `
[listeners.dns]
bind = "127.0.0.1:53"
protocol = "udp"
pool = "db"
`

func TestParseUDPDefaults(t *testing.T) {
	cfg, err := parseFake(listenerDNS + poolDB)
	if err != nil {
		t.Fatal(err)
	}
	want := Listener{
		Name:           "dns",
		Bind:           netip.MustParseAddrPort("127.0.0.1:53"),
		BindText:       "127.0.0.1:53",
		Protocol:       UDP,
		Pool:           "db",
		Sockets:        runtime.GOMAXPROCS(0),
		SessionTimeout: 30 * time.Second,
		MaxSessions:    65536,
	}
	if !reflect.DeepEqual(cfg.Listeners, []Listener{want}) {
		t.Errorf("got  %+v\nwant %+v", cfg.Listeners, want)
	}
}

func TestParseUDPEveryKey(t *testing.T) {
	cfg, err := parseFake(`
[listeners.dns]
bind = ":53"
protocol = "udp"
pool = "db"
sockets = 3
session_timeout = "5s"
responses = 1
max_sessions = 1000
# A TCP listener may share the address and port.
[listeners.dnstcp]
bind = ":53"
pool = "db"
` + poolDB)
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Listeners[0]
	if got.Protocol != UDP || got.Sockets != 3 || got.SessionTimeout != 5*time.Second ||
		got.Responses != 1 || got.MaxSessions != 1000 {
		t.Errorf("got %+v", got)
	}
	if tcp := cfg.Listeners[1]; tcp.Protocol != TCP || tcp.SessionTimeout != 0 || tcp.MaxSessions != 0 {
		t.Errorf("TCP listener got UDP values: %+v", tcp)
	}
}

var badUDPConfigs = []struct {
	name string
	toml string
	want []string
}{
	{"tcp keys on udp", listenerDNS + "max_connections = 5\nconnect_timeout = \"1s\"\nidle_timeout = \"1m\"\nhalf_closed_timeout = \"1m\"\n" + poolDB,
		[]string{`t.toml:6: listeners.dns.max_connections: applies only to protocol = "tcp", not "udp"`,
			`t.toml:7: listeners.dns.connect_timeout: applies only to protocol = "tcp", not "udp"`,
			`t.toml:8: listeners.dns.idle_timeout: applies only to protocol = "tcp"`,
			`t.toml:9: listeners.dns.half_closed_timeout: applies only to protocol = "tcp"`}},
	{"udp keys on tcp", listenerPG + "session_timeout = \"1s\"\nresponses = 1\nmax_sessions = 5\n" + poolDB,
		[]string{`t.toml:6: listeners.pg.session_timeout: applies only to protocol = "udp", not "tcp"`,
			`t.toml:7: listeners.pg.responses: applies only to protocol = "udp", not "tcp"`,
			`t.toml:8: listeners.pg.max_sessions: applies only to protocol = "udp", not "tcp"`}},
	{"udp unknown key", listenerDNS + "backlog = 5\n" + poolDB,
		[]string{"t.toml:6: listeners.dns.backlog: unknown key; allowed here: bind, protocol, pool, sockets, session_timeout, responses, max_sessions"}},
	{"udp values", listenerDNS + "session_timeout = 30\nresponses = -1\nmax_sessions = 0\nsockets = 2000\n" + poolDB,
		[]string{`t.toml:6: listeners.dns.session_timeout: must be a string with a unit, such as "30s", not an integer`,
			"t.toml:7: listeners.dns.responses: must be 0..2147483647, not -1",
			"t.toml:8: listeners.dns.max_sessions: must be 1..1048576, not 0",
			"t.toml:9: listeners.dns.sockets: must be 0..1024, not 2000"}},
	{"udp zero timeout", listenerDNS + "session_timeout = \"0s\"\nmax_sessions = 1048577\n" + poolDB,
		[]string{"t.toml:6: listeners.dns.session_timeout: must be greater than zero",
			"t.toml:7: listeners.dns.max_sessions: must be 1..1048576, not 1048577"}},
	{"two udp on one port", listenerDNS + "[listeners.dns2]\nbind = \":53\"\nprotocol = \"udp\"\npool = \"db\"\n" + poolDB,
		[]string{"t.toml:7: listeners.dns2.bind: [::]:53 conflicts with listeners.dns.bind (127.0.0.1:53)"}},
	{"bad protocol keeps other errors quiet", "[listeners.x]\nbind = \":1\"\npool = \"db\"\nprotocol = \"quic\"\nresponses = 1\nmax_connections = 2\ncolour = 1\n" + poolDB,
		[]string{`t.toml:4: listeners.x.protocol: unknown protocol "quic"`, "t.toml:7: listeners.x.colour: unknown key"}},
}

func TestParseBadUDP(t *testing.T) {
	for _, tc := range badUDPConfigs {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFake(tc.toml)
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("got %v, want Errors", err)
			}
			wantContains(t, err.Error(), tc.want...)
			if len(errs) != len(tc.want) && tc.name != "bad protocol keeps other errors quiet" {
				t.Errorf("%d errors, want %d:\n%v", len(errs), len(tc.want), err)
			}
			if tc.name == "bad protocol keeps other errors quiet" && len(errs) != 2 {
				t.Errorf("%d errors, want 2 (the protocol, the unknown key):\n%v", len(errs), err)
			}
		})
	}
}

// protocolFieldsOK reports whether l's fields of its protocol are valid and
// those of the other protocol zero.
func protocolFieldsOK(l Listener) bool {
	tcp := l.MaxConnections >= 0 && l.ConnectTimeout > 0 && l.IdleTimeout > 0 && l.HalfClosedTimeout > 0
	noTCP := l.MaxConnections == 0 && l.ConnectTimeout == 0 && l.IdleTimeout == 0 && l.HalfClosedTimeout == 0
	udp := l.SessionTimeout > 0 && l.Responses >= 0 && l.Responses <= maxResponses &&
		l.MaxSessions >= 1 && l.MaxSessions <= maxSessions
	noUDP := l.SessionTimeout == 0 && l.Responses == 0 && l.MaxSessions == 0
	switch l.Protocol {
	case UDP:
		return udp && noTCP && l.HTTP == nil
	case HTTP:
		return httpFieldsOK(l) && noUDP
	}
	return tcp && noUDP && l.HTTP == nil
}
