package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// badConfigs are files Parse must refuse, with substrings the error must
// hold; the fuzz test seeds from them too.
var badConfigs = []struct {
	name string
	toml string
	want []string
}{
	{"syntax", "drain_timeout = \n", []string{"t.toml:1: invalid toml"}},
	{"duplicate key", "drain_timeout = \"1s\"\ndrain_timeout = \"2s\"\n", []string{"t.toml:2: invalid toml"}},
	{"no listeners", poolDB, []string{"t.toml: listeners: no listeners"}},
	{"empty listeners", "[listeners]\n" + poolDB, []string{"t.toml:1: listeners: no listeners"}},
	{"listeners not a table", "listeners = 1\n" + poolDB, []string{"t.toml:1: listeners: must be a table"}},
	{"unknown top key", "colour = \"red\"\n" + listenerPG + poolDB,
		[]string{"t.toml:1: colour: unknown key; allowed here: drain_timeout, drain_rate, pid_file, log, listeners, pools, caches, admin, bgp"}},
	{"drain bare integer", "drain_timeout = 30\n" + listenerPG + poolDB,
		[]string{`t.toml:1: drain_timeout: must be a string with a unit, such as "30s"`}},
	{"drain negative", "drain_timeout = \"-5s\"\n" + listenerPG + poolDB, []string{"t.toml:1: drain_timeout: must not be negative"}},
	{"drain no unit", "drain_timeout = \"5\"\n" + listenerPG + poolDB, []string{`t.toml:1: drain_timeout: invalid duration "5"`}},
	{"pid_file empty", "pid_file = \"\"\n" + listenerPG + poolDB, []string{"t.toml:1: pid_file: must not be empty"}},
	{"pid_file not a string", "pid_file = 1\n" + listenerPG + poolDB, []string{"t.toml:1: pid_file: must be a string, not an integer"}},
	{"log not a table", "log = \"json\"\n" + listenerPG + poolDB, []string{"t.toml:1: log: must be a table, not a string"}},
	{"log format", "[log]\nformat = \"xml\"\n" + listenerPG + poolDB, []string{`t.toml:2: log.format: unknown log format "xml": want "text" or "json"`}},
	{"http log format", "[log]\nhttp_format = \"clf\"\n" + listenerPG + poolDB,
		[]string{`t.toml:2: log.http_format: unknown HTTP log format "clf": want "record", "common" or "combined"`}},
	{"log level", "[log]\nlevel = \"verbose\"\n" + listenerPG + poolDB, []string{`t.toml:2: log.level: unknown level "verbose"`}},
	{"log unknown key", "[log]\nlevl = \"info\"\n" + listenerPG + poolDB, []string{"t.toml:2: log.levl: unknown key; allowed here: format, level, http_format"}},
	{"listener not a table", "[listeners]\npg = 5\n" + poolDB, []string{"t.toml:2: listeners.pg: must be a table, not an integer"}},
	{"listener bad name", "[listeners.\"bad name\"]\nbind = \":1\"\npool = \"db\"\n" + poolDB,
		[]string{`t.toml:1: listeners."bad name": name must be 1..64 characters of A-Z a-z 0-9 _ . -`}},
	{"listener long name", "[listeners." + strings.Repeat("a", 65) + "]\nbind = \":1\"\npool = \"db\"\n" + poolDB,
		[]string{"t.toml:1: listeners.aaaa", "name must be 1..64"}},
	{"listener unknown key", "[listeners.pg]\nbind = \":1\"\npool = \"db\"\nbacklog = 5\n" + poolDB,
		[]string{"t.toml:4: listeners.pg.backlog: unknown key; allowed here: bind, protocol, pool, max_connections, sockets, connect_timeout, idle_timeout, half_closed_timeout"}},
	{"listener missing keys", "[listeners.pg]\nsockets = 1\n" + poolDB,
		[]string{"t.toml:1: listeners.pg.bind: required key is missing", "t.toml:1: listeners.pg.pool: required key is missing"}},
	{"bind host name", "[listeners.pg]\nbind = \"db.local:6432\"\npool = \"db\"\n" + poolDB,
		[]string{`t.toml:2: listeners.pg.bind: "db.local:6432": host names are not resolved; give an IP address`}},
	{"bind port 0", "[listeners.pg]\nbind = \"127.0.0.1:0\"\npool = \"db\"\n" + poolDB, []string{`t.toml:2: listeners.pg.bind: "127.0.0.1:0": port "0": want 1..65535`}},
	{"bind no port", "[listeners.pg]\nbind = \"127.0.0.1\"\npool = \"db\"\n" + poolDB, []string{`t.toml:2: listeners.pg.bind: "127.0.0.1": want IP:port`}},
	{"bind ipv6 no brackets", "[listeners.pg]\nbind = \"::1:80\"\npool = \"db\"\n" + poolDB, []string{`t.toml:2: listeners.pg.bind: "::1:80": want IP:port`}},
	{"bind bad ip", "[listeners.pg]\nbind = \"10.0.0.300:80\"\npool = \"db\"\n" + poolDB, []string{`invalid IP address "10.0.0.300"`}},
	{"bind not a string", "[listeners.pg]\nbind = 6432\npool = \"db\"\n" + poolDB, []string{"t.toml:2: listeners.pg.bind: must be a string, not an integer"}},
	{"bind template empty", "[listeners.pg]\nbind = '{{ GetInterfaceIP \"wlan0\" }}:80'\npool = \"db\"\n" + poolDB,
		[]string{`t.toml:2: listeners.pg.bind: template resolved to no address (":80")`}},
	{"bind template several", "[listeners.pg]\nbind = '{{ GetPrivateIPs }}:80'\npool = \"db\"\n" + poolDB,
		[]string{"t.toml:2: listeners.pg.bind: template resolved to 3 addresses", "172.17.0.1 10.0.0.5 fd00::5:80"}},
	{"protocol other", "[listeners.pg]\nbind = \":1\"\npool = \"db\"\nprotocol = \"sctp\"\n" + poolDB,
		[]string{`t.toml:4: listeners.pg.protocol: unknown protocol "sctp": want "tcp", "udp" or "http"`}},
	{"pool undefined", "[listeners.pg]\nbind = \":1\"\npool = \"dbx\"\n" + poolDB, []string{`t.toml:3: listeners.pg.pool: no pool "dbx" in this file`}},
	{"pool not a string", "[listeners.pg]\nbind = \":1\"\npool = [\"db\"]\n" + poolDB, []string{"t.toml:3: listeners.pg.pool: must be a string, not an array"}},
	{"listener integers", "[listeners.pg]\nbind = \":1\"\npool = \"db\"\nmax_connections = -1\nsockets = 1025\n" + poolDB,
		[]string{"t.toml:4: listeners.pg.max_connections: must be 0..", "not -1", "t.toml:5: listeners.pg.sockets: must be 0..1024, not 1025"}},
	{"sockets string", "[listeners.pg]\nbind = \":1\"\npool = \"db\"\nsockets = \"4\"\n" + poolDB, []string{"t.toml:4: listeners.pg.sockets: must be an integer, not a string"}},
	{"listener durations", "[listeners.pg]\nbind = \":1\"\npool = \"db\"\nconnect_timeout = \"0s\"\nidle_timeout = 30\nhalf_closed_timeout = \"-1m\"\n" + poolDB,
		[]string{"t.toml:4: listeners.pg.connect_timeout: must be greater than zero",
			`t.toml:5: listeners.pg.idle_timeout: must be a string with a unit, such as "30s", not an integer`,
			"t.toml:6: listeners.pg.half_closed_timeout: must not be negative"}},
	{"binds same", listenerPG + "[listeners.pg2]\nbind = \"127.0.0.1:6432\"\npool = \"db\"\n" + poolDB,
		[]string{"t.toml:7: listeners.pg2.bind: 127.0.0.1:6432 conflicts with listeners.pg.bind (127.0.0.1:6432)"}},
	{"binds wildcard v6", listenerPG + "[listeners.pg2]\nbind = \":6432\"\npool = \"db\"\n" + poolDB,
		[]string{"t.toml:7: listeners.pg2.bind: [::]:6432 conflicts with listeners.pg.bind (127.0.0.1:6432)"}},
	{"binds wildcard v4", "[listeners.a]\nbind = \"0.0.0.0:80\"\npool = \"db\"\n[listeners.b]\nbind = \"[::1]:80\"\npool = \"db\"\n" + poolDB,
		[]string{"t.toml:5: listeners.b.bind: [::1]:80 conflicts with listeners.a.bind (0.0.0.0:80)"}},
	{"pool not a table", listenerPG + "[pools]\ndb = \"x\"\n", []string{"t.toml:7: pools.db: must be a table, not a string"}},
	{"pools not a table", "pools = 1\n" + listenerPG, []string{"t.toml:1: pools: must be a table, not an integer", `t.toml:5: listeners.pg.pool: no pool "db"`}},
	{"pool bad name", listenerPG + poolDB + "[pools.\"a/b\"]\n[[pools.\"a/b\".backends]]\naddress = \"10.0.0.1:1\"\n",
		[]string{`t.toml:10: pools."a/b": name must be 1..64`}},
	{"pool unknown key", listenerPG + "[pools.db]\nbalanse = \"maglev\"\n[[pools.db.backends]]\naddress = \"10.0.0.1:1\"\n",
		[]string{"t.toml:7: pools.db.balanse: unknown key; allowed here: balance, hash_key, table_size, retries, backends"}},
	{"balance unknown", listenerPG + "[pools.db]\nbalance = \"fastest\"\nhash_key = \"client_ip\"\n[[pools.db.backends]]\naddress = \"10.0.0.1:1\"\n",
		[]string{`t.toml:7: pools.db.balance: unknown balance "fastest"`}},
	{"hash_key without maglev", listenerPG + "[pools.db]\nbalance = \"least_conn\"\nhash_key = \"client_ip\"\ntable_size = 7\n[[pools.db.backends]]\naddress = \"10.0.0.1:1\"\n",
		[]string{`t.toml:8: pools.db.hash_key: applies only to balance = "maglev", not "least_conn"`,
			`t.toml:9: pools.db.table_size: applies only to balance = "maglev"`}},
	{"hash_key default balance", listenerPG + "[pools.db]\nhash_key = \"client_ip\"\n[[pools.db.backends]]\naddress = \"10.0.0.1:1\"\n",
		[]string{`t.toml:7: pools.db.hash_key: applies only to balance = "maglev", not "round_robin"`}},
	{"hash_key unknown", listenerPG + "[pools.db]\nbalance = \"maglev\"\nhash_key = \"mac\"\n[[pools.db.backends]]\naddress = \"10.0.0.1:1\"\n",
		[]string{`t.toml:8: pools.db.hash_key: unknown hash key "mac"`}},
	{"table_size not prime", listenerPG + "[pools.db]\nbalance = \"maglev\"\ntable_size = 65536\n[[pools.db.backends]]\naddress = \"10.0.0.1:1\"\n",
		[]string{"t.toml:8: pools.db.table_size: must be a prime number, such as 65537 or 655373, not 65536"}},
	{"table_size too big", listenerPG + "[pools.db]\nbalance = \"maglev\"\ntable_size = 1000033\n[[pools.db.backends]]\naddress = \"10.0.0.1:1\"\n",
		[]string{"t.toml:8: pools.db.table_size: must be 1..1000003, not 1000033"}},
	{"table_size below backends", listenerPG + "[pools.db]\nbalance = \"maglev\"\ntable_size = 2\n" +
		"[[pools.db.backends]]\naddress = \"10.0.0.1:1\"\n[[pools.db.backends]]\naddress = \"10.0.0.2:1\"\n[[pools.db.backends]]\naddress = \"10.0.0.3:1\"\n",
		[]string{"t.toml:8: pools.db.table_size: 2 is less than the number of backends (3)"}},
	{"retries", listenerPG + "[pools.db]\nretries = 101\n[[pools.db.backends]]\naddress = \"10.0.0.1:1\"\n",
		[]string{"t.toml:7: pools.db.retries: must be 0..100, not 101"}},
	{"no backends", listenerPG + "[pools.db]\nretries = 1\n", []string{"t.toml:6: pools.db.backends: no backends: add at least one [[pools.db.backends]] table"}},
	{"empty backends", listenerPG + "[pools.db]\nbackends = []\n", []string{"t.toml:7: pools.db.backends: no backends"}},
	{"backends not tables", listenerPG + "[pools.db]\nbackends = [\"10.0.0.1:1\"]\n", []string{"t.toml:7: pools.db.backends: must be an array of tables"}},
	{"backend missing address", listenerPG + "[pools.db]\n[[pools.db.backends]]\nweight = 2\n",
		[]string{"t.toml:7: pools.db.backends[0].address: required key is missing"}},
	{"backend host name", listenerPG + "[pools.db]\n[[pools.db.backends]]\naddress = \"db1:5432\"\n",
		[]string{`t.toml:8: pools.db.backends[0].address: "db1:5432": host names are not resolved; give an IP address`}},
	{"backend wildcard", listenerPG + "[pools.db]\n[[pools.db.backends]]\naddress = \":5432\"\n",
		[]string{`t.toml:8: pools.db.backends[0].address: ":5432": missing IP address`}},
	{"backend weights", listenerPG + "[pools.db]\n[[pools.db.backends]]\naddress = \"10.0.0.1:1\"\nweight = 0\n" +
		"[[pools.db.backends]]\naddress = \"10.0.0.2:1\"\nweight = 257\n[[pools.db.backends]]\naddress = \"10.0.0.3:1\"\nweight = 1.5\n",
		[]string{"t.toml:9: pools.db.backends[0].weight: must be 1..256, not 0",
			"t.toml:12: pools.db.backends[1].weight: must be 1..256, not 257",
			"t.toml:15: pools.db.backends[2].weight: must be an integer, not a float"}},
	{"backend duplicate", listenerPG + "[pools.db]\n[[pools.db.backends]]\naddress = \"10.0.0.1:1\"\n" +
		"[[pools.db.backends]]\naddress = \"[::ffff:10.0.0.1]:1\"\n",
		[]string{"t.toml:10: pools.db.backends[1].address: 10.0.0.1:1 is already backends[0]"}},
	{"backend unknown key", listenerPG + "[pools.db]\n[[pools.db.backends]]\naddress = \"10.0.0.1:1\"\nhost = \"a\"\n[[pools.db.backends]]\naddress = \"10.0.0.2:1\"\n",
		[]string{"t.toml:9: pools.db.backends[0].host: unknown key; allowed here: address, weight"}},
	{"backend lines with odd headers", listenerPG + "[pools.db]\n[[ pools . \"db\" . backends ]]  # first\n\n  'address' = \"10.0.0.1:0\"\n" +
		"[pools.other]\n[[pools.other.backends]]\naddress = \"10.0.0.9:1\"\n[[pools.db.backends]]\nweight = 3\naddress = \"10.0.0.2:1\"\n",
		[]string{`t.toml:9: pools.db.backends[0].address: "10.0.0.1:0": port "0"`}},
	{"backend line redefined inline", listenerPG + "[pools.db]\nbackends = [\n  {address = \"10.0.0.1:1\", weight = 0},\n  {address = \"10.0.0.2:1\", weight = 1},\n]\n",
		[]string{"t.toml:8: pools.db.backends[0].weight: must be 1..256, not 0"}},
	{"backend line inline", listenerPG + "[pools.db]\nbackends = [\n  {address = \"10.0.0.1:1\", weight = 0},\n  {address = \"10.0.0.2:1\"},\n]\n",
		[]string{"t.toml:8: pools.db.backends[0].weight: must be 1..256, not 0"}},
	{"backend line with fake header", listenerPG + "[pools.db]\n[[pools.db.backends]]\naddress = \"10.0.0.1:1\"\nweight = 0\nnote = '''\n[[pools.db.backends]]\n'''\n" +
		"[[pools.db.backends]]\naddress = \"10.0.0.2:1\"\nweight = 2\n",
		[]string{"t.toml:9: pools.db.backends[0].weight: must be 1..256, not 0", "t.toml:10: pools.db.backends[0].note: unknown key"}},
	{"many at once", "drain_timeout = 5\n[log]\nformat = \"xml\"\n[listeners.a]\nbind = \"localhost:80\"\npool = \"nope\"\n" +
		"[pools.db]\nbalance = \"random\"\ntable_size = 7\n[[pools.db.backends]]\naddress = \"10.0.0.1:80\"\nweight = 300\n",
		[]string{"t.toml:1: drain_timeout: must be a string with a unit", "t.toml:3: log.format: unknown log format",
			"t.toml:5: listeners.a.bind: \"localhost:80\": host names are not resolved", `t.toml:6: listeners.a.pool: no pool "nope"`,
			`t.toml:9: pools.db.table_size: applies only to balance = "maglev"`, "t.toml:12: pools.db.backends[0].weight: must be 1..256"}},
}

func TestParseBad(t *testing.T) {
	for _, tc := range badConfigs {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseFake(tc.toml)
			if err == nil {
				t.Fatalf("parsed without error: %+v", cfg)
			}
			if cfg != nil {
				t.Errorf("got a config with the error")
			}
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %T is not a non-empty Errors: %v", err, err)
			}
			wantContains(t, err.Error(), tc.want...)
		})
	}
}

func TestErrorsSortedByLineThenKey(t *testing.T) {
	_, err := parseFake("[listeners.b]\nbind = 1\npool = 2\n[listeners.a]\nbind = 3\n")
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("got %v", err)
	}
	for i := 1; i < len(errs); i++ {
		a, b := errs[i-1], errs[i]
		if a.Line > b.Line || a.Line == b.Line && a.Key > b.Key {
			t.Errorf("not sorted:\n%v", err)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	withLine := &Error{File: "f.toml", Line: 3, Key: "log.level", Msg: "bad"}
	noLine := &Error{File: "f.toml", Key: "pools.db.backends[2].address", Msg: "bad"}
	syntax := &Error{File: "f.toml", Line: 1, Msg: "invalid toml: x"}
	for e, want := range map[*Error]string{
		withLine: "f.toml:3: log.level: bad",
		noLine:   "f.toml: pools.db.backends[2].address: bad",
		syntax:   "f.toml:1: invalid toml: x",
	} {
		if got := e.Error(); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	var err error = Errors{withLine, noLine}
	if got, want := err.Error(), "f.toml:3: log.level: bad\nf.toml: pools.db.backends[2].address: bad"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	var e *Error
	if !errors.As(err, &e) || e != withLine {
		t.Errorf("errors.As found %v", e)
	}
	if !errors.Is(err, noLine) {
		t.Errorf("errors.Is does not find the second error")
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/no-such-file.toml")
	wantContains(t, fmtErr(err), "reading config:", "no-such-file.toml")
}

func fmtErr(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// TestBindConflicts checks that each listener is reported once, against
// the first earlier listener (in name order) it conflicts with, so that
// many listeners on one port make as many errors, not one per pair.
func TestBindConflicts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		binds []string // listeners l0, l1, ... in order
		want  []string // key: conflicting bind
	}{
		{"same", []string{"127.0.0.1:80", "127.0.0.1:80", "127.0.0.1:80"},
			[]string{"listeners.l1.bind: 127.0.0.1:80 conflicts with listeners.l0.bind", "listeners.l2.bind: 127.0.0.1:80 conflicts with listeners.l0.bind"}},
		{"wildcard after", []string{"10.0.0.1:80", "10.0.0.2:80", ":80"},
			[]string{"listeners.l2.bind: [::]:80 conflicts with listeners.l0.bind (10.0.0.1:80)"}},
		{"wildcard before", []string{"0.0.0.0:80", "10.0.0.2:80", "[::]:80"},
			[]string{"listeners.l1.bind: 10.0.0.2:80 conflicts with listeners.l0.bind", "listeners.l2.bind: [::]:80 conflicts with listeners.l0.bind"}},
		{"address before wildcard", []string{"10.0.0.1:80", ":80", "10.0.0.1:80"},
			[]string{"listeners.l1.bind: [::]:80 conflicts with listeners.l0.bind", "listeners.l2.bind: 10.0.0.1:80 conflicts with listeners.l0.bind"}},
		{"wildcard before address", []string{"10.0.0.2:80", ":80", "10.0.0.1:80"},
			[]string{"listeners.l1.bind: [::]:80 conflicts with listeners.l0.bind", "listeners.l2.bind: 10.0.0.1:80 conflicts with listeners.l1.bind"}},
		{"other ports and protocols", []string{"10.0.0.1:80", "10.0.0.1:81", "udp 10.0.0.1:80", "udp :80"},
			[]string{"listeners.l3.bind: [::]:80 conflicts with listeners.l2.bind (10.0.0.1:80)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			for i, bind := range tc.binds {
				proto := "tcp"
				if p, a, ok := strings.Cut(bind, " "); ok {
					proto, bind = p, a
				}
				fmt.Fprintf(&b, "[listeners.l%d]\nbind = %q\nprotocol = %q\npool = \"db\"\n", i, bind, proto)
			}
			_, err := parseFake(b.String() + poolDB)
			var errs Errors
			if len(tc.want) > 0 && !errors.As(err, &errs) {
				t.Fatalf("got %v", err)
			}
			if len(errs) != len(tc.want) {
				t.Errorf("%d errors, want %d:\n%v", len(errs), len(tc.want), err)
			}
			wantContains(t, fmtErr(err), tc.want...)
		})
	}
}
