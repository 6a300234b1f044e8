package config

import (
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("../examples/sluice.toml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(example))
	f.Add(listenerPG + poolDB)
	for _, tc := range badConfigs {
		f.Add(tc.toml)
	}
	for _, tc := range badUDPConfigs {
		f.Add(tc.toml)
	}
	for _, tc := range badHealthConfigs {
		f.Add(tc.toml)
	}
	for _, tc := range badClientConfigs {
		f.Add(tc.toml)
	}
	f.Add(goodHTTP)
	if l7, err := os.ReadFile("../examples/l7.toml"); err == nil {
		f.Add(string(l7))
	}
	for _, tc := range badHTTPConfigs {
		f.Add(tc.toml)
	}
	f.Fuzz(func(t *testing.T, text string) {
		cfg, err := parseFake(text)
		if err != nil {
			if cfg != nil {
				t.Errorf("config returned with error %v", err)
			}
			for _, e := range err.(Errors) {
				if e.Line < 0 || e.Line > strings.Count(text, "\n")+1 {
					t.Errorf("line %d outside the file: %v", e.Line, e)
				}
			}
			return
		}
		checkInvariants(t, cfg)
	})
}

// checkInvariants fails t unless cfg is what Parse promises.
func checkInvariants(t *testing.T, cfg *Config) {
	t.Helper()
	if cfg.DrainTimeout < 0 || len(cfg.Listeners) == 0 {
		t.Errorf("drain %v, %d listeners", cfg.DrainTimeout, len(cfg.Listeners))
	}
	byName := func(a, b string) int { return strings.Compare(a, b) }
	if !slices.IsSortedFunc(cfg.Listeners, func(a, b Listener) int { return byName(a.Name, b.Name) }) ||
		!slices.IsSortedFunc(cfg.Pools, func(a, b Pool) int { return byName(a.Name, b.Name) }) {
		t.Errorf("not sorted by name")
	}
	for i, l := range cfg.Listeners {
		if !nameRE.MatchString(l.Name) || (cfg.Pool(l.Pool) == nil) != (l.Protocol == HTTP && l.Pool == "") || !l.Bind.IsValid() || l.Bind.Port() == 0 ||
			l.Sockets < 1 || l.Sockets > maxSockets || !protocolFieldsOK(l) || !clientFieldsOK(l) {
			t.Errorf("bad listener %+v", l)
		}
		for _, o := range cfg.Listeners[:i] {
			if l.Protocol.socket() == o.Protocol.socket() && bindsConflict(l.Bind, o.Bind) {
				t.Errorf("listeners %s and %s conflict", l.Name, o.Name)
			}
		}
	}
	for _, p := range cfg.Pools {
		checkPool(t, p)
	}
}

func checkPool(t *testing.T, p Pool) {
	t.Helper()
	if !nameRE.MatchString(p.Name) || len(p.Backends) == 0 || p.Retries < 0 || p.Retries > maxRetries {
		t.Errorf("bad pool %+v", p)
	}
	if maglev := p.Balance.String() == "maglev"; maglev != (p.TableSize != 0) ||
		maglev && (!isPrime(p.TableSize) || p.TableSize < len(p.Backends) || p.TableSize > maxTableSize) {
		t.Errorf("pool %s: table size %d with balance %v", p.Name, p.TableSize, p.Balance)
	}
	seen := map[netip.AddrPort]bool{}
	for _, b := range p.Backends {
		if !b.Address.IsValid() || b.Address.Port() == 0 ||
			b.Weight < 1 || b.Weight > maxWeight || seen[b.Address] {
			t.Errorf("pool %s: bad backend %+v", p.Name, b)
		}
		seen[b.Address] = true
		if (b.Health == nil) != (p.Health == nil) || b.Health != nil && (!checkOK(*b.Health) ||
			!b.Health.Address.IsValid() || b.Health.Address.Port() == 0 || b.Health.Kind != p.Health.Kind) {
			t.Errorf("pool %s: bad backend check %+v", p.Name, b.Health)
		}
	}
	if p.PassiveFailures < 0 || p.PassiveBackoff <= 0 || p.SlowStart < 0 || p.Health != nil && !checkOK(*p.Health) {
		t.Errorf("pool %s: bad health options %+v", p.Name, p)
	}
}

// checkOK reports whether a check's timings are what Parse promises.
func checkOK(h Health) bool {
	return h.Interval > 0 && h.Timeout > 0 && h.Timeout <= h.Interval && h.Jitter >= 0 && h.Jitter <= h.Interval/2 &&
		h.Rise >= 1 && h.Rise <= maxRiseFall && h.Fall >= 1 && h.Fall <= maxRiseFall
}
