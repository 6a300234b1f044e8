package main

import (
	"testing"
	"time"

	"sluice/config"
	"sluice/internal/pool"
)

// TestReloadKeepAliveMakesNewProxy: a TCP proxy reads its listener's and
// its pool's keep-alive settings once, so a reload that changes either
// must build a new proxy (on the same sockets) rather than keep the old.
func TestReloadKeepAliveMakesNewProxy(t *testing.T) {
	ka := config.KeepAlive{Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 3}
	base := func() *config.Config {
		return &config.Config{
			Listeners: []config.Listener{{Name: "l", Pool: "p"}},
			Pools:     []config.Pool{{Name: "p"}},
		}
	}
	p := &pool.Pool{}
	pools := map[string]*pool.Pool{"p": p}
	old := base()
	running := &live{lc: old.Listeners[0], pool: p, hooks: hooksOf(old.Pool("p"))}
	for _, tc := range []struct {
		name   string
		change func(*config.Config)
		kept   bool
	}{
		{"nothing changed", func(*config.Config) {}, true},
		{"listener's probes", func(c *config.Config) { c.Listeners[0].KeepAlive = ka }, false},
		{"pool's probes", func(c *config.Config) { c.Pools[0].KeepAlive = ka }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := base()
			tc.change(next)
			if got := unchanged(next, next.Listeners[0], running, pools); got != tc.kept {
				t.Errorf("proxy kept: %v, want %v", got, tc.kept)
			}
		})
	}
}
