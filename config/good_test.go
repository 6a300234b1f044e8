package config

import (
	"log/slog"
	"net/netip"
	"reflect"
	"runtime"
	"testing"
	"time"

	"sluice/internal/pool"
)

func TestParseDefaults(t *testing.T) {
	cfg, err := parseFake(listenerPG + poolDB)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		File:         "t.toml",
		DrainTimeout: 30 * time.Second,
		Log:          Log{Format: LogText, Level: slog.LevelInfo},
		Listeners: []Listener{{
			Name:              "pg",
			Bind:              netip.MustParseAddrPort("127.0.0.1:6432"),
			BindText:          "127.0.0.1:6432",
			Protocol:          TCP,
			Pool:              "db",
			Sockets:           runtime.GOMAXPROCS(0),
			ConnectTimeout:    5 * time.Second,
			IdleTimeout:       10 * time.Minute,
			HalfClosedTimeout: time.Minute,
		}},
		Pools: []Pool{{
			Name:            "db",
			Balance:         pool.RoundRobin,
			HashKey:         pool.ClientIP,
			Retries:         3,
			Backends:        []Backend{{Address: netip.MustParseAddrPort("10.0.0.3:5432"), Weight: 1}},
			PassiveFailures: 3,
			PassiveBackoff:  10 * time.Second,
		}},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got  %+v\nwant %+v", cfg, want)
	}
}

func TestParseEveryKey(t *testing.T) {
	cfg, err := parseFake(`
drain_timeout = "0s"
[log]
format = "json"
level = "debug"
http_format = "combined"
[listeners.b]
bind = ":5432"
protocol = "tcp"
pool = "m"
max_connections = 100
sockets = 4
connect_timeout = "250ms"
idle_timeout = "1h"
half_closed_timeout = "30s"
[listeners.a]
bind = "[::1]:5433"
pool = "m"
[pools.m]
balance = "maglev"
hash_key = "client_ip_port"
table_size = 655373
retries = 0
[[pools.m.backends]]
address = "[fd00::3]:5432"
weight = 256
[[pools.m.backends]]
address = "10.0.0.3:5432"
`)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DrainTimeout != 0 || cfg.Log != (Log{Format: LogJSON, Level: slog.LevelDebug, HTTPFormat: HTTPLogCombined}) {
		t.Errorf("drain %v, log %+v", cfg.DrainTimeout, cfg.Log)
	}
	if len(cfg.Listeners) != 2 || cfg.Listeners[0].Name != "a" {
		t.Fatalf("listeners not sorted by name: %+v", cfg.Listeners)
	}
	if got := cfg.Listeners[0].Bind; got != netip.MustParseAddrPort("[::1]:5433") {
		t.Errorf("ipv6 bind %v", got)
	}
	b := cfg.Listeners[1]
	want := Listener{Name: "b", Bind: netip.MustParseAddrPort("[::]:5432"), BindText: ":5432", Pool: "m",
		MaxConnections: 100, Sockets: 4, ConnectTimeout: 250 * time.Millisecond, IdleTimeout: time.Hour,
		HalfClosedTimeout: 30 * time.Second}
	if !reflect.DeepEqual(b, want) {
		t.Errorf("got  %+v\nwant %+v", b, want)
	}
	p := cfg.Pool("m")
	if p == nil || p.Balance != pool.Maglev || p.HashKey != pool.ClientIPPort || p.TableSize != 655373 || p.Retries != 0 {
		t.Fatalf("pool %+v", p)
	}
	wantBackends := []Backend{{Address: netip.MustParseAddrPort("[fd00::3]:5432"), Weight: 256}, {Address: netip.MustParseAddrPort("10.0.0.3:5432"), Weight: 1}}
	if !reflect.DeepEqual(p.Backends, wantBackends) {
		t.Errorf("backends %+v", p.Backends)
	}
	if cfg.Pool("nope") != nil {
		t.Errorf("Pool found a pool that is not there")
	}
}

func TestParseMaglevDefaults(t *testing.T) {
	cfg, err := parseFake(listenerPG + "[pools.db]\nbalance = \"maglev\"\n[[pools.db.backends]]\naddress = \"10.0.0.1:1\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.Pools[0]; p.TableSize != 65537 || p.HashKey != pool.ClientIP {
		t.Errorf("pool %+v", p)
	}
}

func TestParseTemplateBind(t *testing.T) {
	cfg, err := parseFake(`
[listeners.pg]
bind = '{{ GetInterfaceIP "eth1" }}:6432'
pool = "db"
[listeners.pg2]
bind = '{{ GetPrivateIP }}:6432'
pool = "db"
` + poolDB)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"[fd00::5]:6432", "10.0.0.5:6432"} {
		if got := cfg.Listeners[i].Bind; got != netip.MustParseAddrPort(want) {
			t.Errorf("%s: bind %v, want %v", cfg.Listeners[i].Name, got, want)
		}
	}
	if got := cfg.Listeners[0].BindText; got != `{{ GetInterfaceIP "eth1" }}:6432` {
		t.Errorf("BindText %q", got)
	}
}

func TestParseBOMAndCRLF(t *testing.T) {
	text := "\xef\xbb\xbfdrain_timeout = \"1s\"\r\n[listeners.pg]\r\nbind = \"127.0.0.1:1\"\r\npool = \"db\"\r\n" +
		"[pools.db]\r\n[[pools.db.backends]]\r\naddress = \"10.0.0.1:1\"\r\nweight = 0\r\n[[pools.db.backends]]\r\naddress = \"10.0.0.2:1\"\r\nweight = 0\r\n"
	_, err := parseFake(text)
	wantContains(t, fmtErr(err), "t.toml:8: pools.db.backends[0].weight", "t.toml:11: pools.db.backends[1].weight")
}

func TestLoadExample(t *testing.T) {
	cfg, err := Load("../examples/sluice.toml")
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, cfg)
	if len(cfg.Listeners) != 4 || len(cfg.Pools) != 3 {
		t.Errorf("listeners %+v, pools %+v", cfg.Listeners, cfg.Pools)
	}
	if cfg.File != "../examples/sluice.toml" {
		t.Errorf("File %q", cfg.File)
	}
}
