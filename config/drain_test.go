package config

import (
	"strings"
	"testing"
	"time"

	"sluice/internal/access"
)

func TestDrainRate(t *testing.T) {
	for _, tc := range []struct {
		name       string
		toml       string
		file, pool access.Rate
	}{
		{"none", poolWith(""), access.Rate{}, access.Rate{}},
		{"file default", "drain_rate = \"50/s\"\n" + poolWith(""), access.Rate{N: 50, Per: time.Second}, access.Rate{N: 50, Per: time.Second}},
		{"pool's own", poolWith(`drain_rate = "600/m"`), access.Rate{}, access.Rate{N: 600, Per: time.Minute}},
		{"pool overrides", "drain_rate = \"50/s\"\n" + poolWith(`drain_rate = "10/s"`), access.Rate{N: 50, Per: time.Second}, access.Rate{N: 10, Per: time.Second}},
		{"pool turns it off", "drain_rate = \"50/s\"\n" + poolWith(`drain_rate = "0"`), access.Rate{N: 50, Per: time.Second}, access.Rate{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseFake(tc.toml)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.DrainRate != tc.file {
				t.Errorf("file drain_rate %v, want %v", cfg.DrainRate, tc.file)
			}
			if got := cfg.Pool("db").DrainRate; got != tc.pool {
				t.Errorf("pool drain_rate %v, want %v", got, tc.pool)
			}
		})
	}
}

func TestBadDrainRate(t *testing.T) {
	for _, tc := range []struct {
		name, toml, want string
	}{
		{"no unit", "drain_rate = \"50\"\n" + poolWith(""), `t.toml:1: drain_rate: invalid rate "50": want a count per s, m or h`},
		{"zero per second", poolWith(`drain_rate = "0/s"`), `t.toml:2: pools.db.drain_rate: invalid rate "0/s": the count must be 1..1000000, or "0" for none`},
		{"number", poolWith(`drain_rate = 50`), `t.toml:2: pools.db.drain_rate: must be a string, not an integer`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFake(tc.toml)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// A pool's own drain_rate that no TCP listener uses is a warning: HTTP
// and UDP listeners do not pace.
func TestDrainRateUnusedWarns(t *testing.T) {
	udp := `[listeners.u]
bind = "127.0.0.1:5353"
protocol = "udp"
pool = "dns"
[pools.dns]
drain_rate = "10/s"
[[pools.dns.backends]]
address = "10.0.0.5:53"
`
	cfg, err := parseFake(poolWith(`drain_rate = "10/s"`) + udp)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0].Error(), `pools.dns.drain_rate: no TCP listener uses pool "dns"`) {
		t.Errorf("warnings %v, want one for pool dns", cfg.Warnings)
	}
}
