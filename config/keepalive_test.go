package config

import (
	"testing"
	"time"
)

func TestParseKeepAlive(t *testing.T) {
	for _, tc := range []struct {
		name           string
		listener, pool string // lines added to [listeners.pg] and [pools.db]
		wantL, wantP   KeepAlive
		wantErr        []string
	}{
		{name: "off by default"},
		{name: "idle alone takes the defaults", listener: `keepalive_idle = "30s"`,
			wantL: KeepAlive{Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 3}},
		{name: "every key, both sides",
			listener: "keepalive_idle = \"1m\"\nkeepalive_interval = \"5s\"\nkeepalive_count = 4",
			pool:     "keepalive_idle = \"2s\"\nkeepalive_interval = \"1s\"\nkeepalive_count = 127",
			wantL:    KeepAlive{Idle: time.Minute, Interval: 5 * time.Second, Count: 4},
			wantP:    KeepAlive{Idle: 2 * time.Second, Interval: time.Second, Count: 127}},
		{name: "interval without idle", listener: `keepalive_interval = "5s"`,
			wantErr: []string{"t.toml:4: listeners.pg.keepalive_interval: needs keepalive_idle"}},
		{name: "count without idle", pool: `keepalive_count = 2`,
			wantErr: []string{"pools.db.keepalive_count: needs keepalive_idle"}},
		{name: "fractions of a second", listener: `keepalive_idle = "1500ms"`,
			wantErr: []string{"t.toml:4: listeners.pg.keepalive_idle: must be whole seconds"}},
		{name: "zero idle", listener: `keepalive_idle = "0s"`,
			wantErr: []string{"listeners.pg.keepalive_idle: must be greater than zero"}},
		{name: "too long", pool: `keepalive_idle = "10h"`,
			wantErr: []string{"pools.db.keepalive_idle: must be at most 9h6m7s"}},
		{name: "count range", listener: "keepalive_idle = \"5s\"\nkeepalive_count = 128",
			wantErr: []string{"listeners.pg.keepalive_count: must be 1..127, not 128"}},
		{name: "not on UDP", listener: "protocol = \"udp\"\nkeepalive_idle = \"5s\"",
			wantErr: []string{`listeners.pg.keepalive_idle: applies only to protocol = "tcp", not "udp"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := "[listeners.pg]\nbind = \"127.0.0.1:6432\"\npool = \"db\"\n" + tc.listener +
				"\n[pools.db]\n" + tc.pool + "\n[[pools.db.backends]]\naddress = \"10.0.0.3:5432\"\n"
			cfg, err := parseFake(text)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatal("parsed; want an error")
				}
				wantContains(t, err.Error(), tc.wantErr...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Listeners[0].KeepAlive; got != tc.wantL {
				t.Errorf("listener keep-alive %+v, want %+v", got, tc.wantL)
			}
			if got := cfg.Pools[0].KeepAlive; got != tc.wantP {
				t.Errorf("pool keep-alive %+v, want %+v", got, tc.wantP)
			}
		})
	}
}
