package config

import (
	"errors"
	"strings"
	"testing"
)

// TestMessages checks messages of issue 8: overflow is "out of range", a
// table implied by a dotted header has its line, and names and values too
// long to read are shortened.
func TestMessages(t *testing.T) {
	long := strings.Repeat("a", 1<<20)
	for _, tc := range []struct {
		name string
		toml string
		want []string
	}{
		{"duration overflow", "drain_timeout = \"99999999999h\"\n" + listenerPG + poolDB,
			[]string{`t.toml:1: drain_timeout: "99999999999h" is out of range: the longest duration is 2562047h47m16.854775807s`}},
		{"duration overflow in parts", "[listeners.pg]\nbind = \":1\"\npool = \"db\"\nidle_timeout = \"2562047h47m17s\"\n" + poolDB,
			[]string{`t.toml:4: listeners.pg.idle_timeout: "2562047h47m17s" is out of range`}},
		{"duration malformed", "drain_timeout = \"1h30\"\n" + listenerPG + poolDB,
			[]string{`t.toml:1: drain_timeout: invalid duration "1h30": want a number and a unit`}},
		{"table implied by a dotted header", listenerPG + "[listeners.pg.limits.inner]\ncert = \"x\"\n" + poolDB,
			[]string{"t.toml:6: listeners.pg.limits: unknown key; allowed here: bind"}},
		{"pool table implied by a dotted header", listenerPG + poolDB + "[pools.db.health.http]\npath = \"/\"\n",
			[]string{"t.toml:10: pools.db.health.http: unknown key; allowed here: kind"}},
		{"long listener name", "[listeners." + long + "]\nbind = \":1\"\npool = \"db\"\n" + poolDB,
			[]string{"t.toml:1: listeners." + long[:maxShown] + "...(1048576 bytes): name must be 1..64 characters"}},
		{"long unknown key", "[listeners.pg]\nbind = \":1\"\npool = \"db\"\n" + long + " = 1\n" + poolDB,
			[]string{"t.toml:4: listeners.pg." + long[:maxShown] + "...(1048576 bytes): unknown key; allowed here: bind"}},
		{"long port", "[listeners.pg]\nbind = \"1.2.3.4:" + long + "\"\npool = \"db\"\n" + poolDB,
			[]string{`t.toml:2: listeners.pg.bind: "1.2.3.4:` + long[:maxShown-8] + `"...(1048584 bytes): port "` + long[:maxShown] + `"...(1048576 bytes): want 1..65535`}},
		{"long pool", "[listeners.pg]\nbind = \":1\"\npool = \"" + long + "\"\n" + poolDB,
			[]string{`t.toml:3: listeners.pg.pool: no pool "` + long[:maxShown] + `"...(1048576 bytes) in this file`}},
		{"long duration", "drain_timeout = \"" + long + "\"\n" + listenerPG + poolDB,
			[]string{`t.toml:1: drain_timeout: invalid duration "` + long[:maxShown] + `"...(1048576 bytes): want a number`}},
		{"long multi-byte value", "[log]\nlevel = \"" + strings.Repeat("é", 1<<19) + "\"\n" + listenerPG + poolDB,
			[]string{`t.toml:2: log.level: unknown level "` + strings.Repeat("é", maxShown/2) + `"...(1048576 bytes): want debug`}},
		{"long value in another package's error", "[listeners.pg]\nbind = \"{{" + long + "}}\"\npool = \"db\"\n" + poolDB,
			[]string{`t.toml:2: listeners.pg.bind: parsing template: template: bind:1: function "aaa`, "aaa...(", " bytes)...aaa", `" not defined`}},
		{"long balance", listenerPG + "[pools.db]\nbalance = \"" + long + "\"\n[[pools.db.backends]]\naddress = \"10.0.0.1:1\"\n",
			[]string{`t.toml:7: pools.db.balance: unknown balance "aaa`, "aaa...(", "want round_robin"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFake(tc.toml)
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("got %v, want Errors", err)
			}
			msg := err.Error()
			if len(msg) > 2000 {
				t.Errorf("message of %d bytes: %.2000s", len(msg), msg)
			}
			wantContains(t, msg, tc.want...)
			for _, e := range errs {
				if len(e.Key) > 4*maxShown || len(e.Msg) > maxMsg+maxShown {
					t.Errorf("long key or message: %.1000s", e)
				}
			}
		})
	}
}
