package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"sluice/health"
	"sluice/internal/pool"
)

// poolWith returns a listener and pool db whose pool table holds extra,
// with two backends; its line 1 is extra's first line.
func poolWith(extra string) string {
	return "[pools.db]\n" + extra + `
[[pools.db.backends]]
address = "10.0.0.3:5432"
[[pools.db.backends]]
address = "10.0.0.4:5432"
` + listenerPG
}

func TestParseHealthDefaults(t *testing.T) {
	cfg, err := parseFake(poolWith("[pools.db.health]"))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Pools[0]
	want := Health{Kind: CheckTCP, Interval: 2 * time.Second, Timeout: time.Second, Jitter: 200 * time.Millisecond,
		Rise: 2, Fall: 3, Method: "GET", Path: "/", StatusMin: 200, StatusMax: 399, Type: 1}
	if p.Health == nil || !reflect.DeepEqual(*p.Health, want) {
		t.Fatalf("pool health %+v, want %+v", p.Health, want)
	}
	if p.OnDown != OnDownKeep || p.SlowStart != 0 || p.PassiveFailures != 3 || p.PassiveBackoff != 10*time.Second {
		t.Errorf("pool %+v", p)
	}
	for _, b := range p.Backends {
		want.Address = b.Address
		if b.Health == nil || !reflect.DeepEqual(*b.Health, want) || b.Backup || b.State != pool.Enabled {
			t.Errorf("backend %+v, health %+v", b, b.Health)
		}
	}
	cfg, err = parseFake(listenerPG + poolDB)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Pools[0].Health != nil || cfg.Pools[0].Backends[0].Health != nil {
		t.Error("health checks without a [health] table")
	}
}

func TestParseHealthEveryKey(t *testing.T) {
	dir := t.TempDir()
	ca, pw := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "pw")
	os.WriteFile(ca, []byte(testCA), 0o600)
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	tests := []struct {
		name string
		toml string
		want func(h *Health)
	}{
		{"tcp", `kind = "tcp"
interval = "500ms"
timeout = "300ms"
rise = 1
fall = 5
port = 8008`, func(h *Health) {
			h.Interval, h.Timeout, h.Jitter, h.Rise, h.Fall, h.Port = 500*time.Millisecond, 300*time.Millisecond, 50*time.Millisecond, 1, 5, 8008
		}},
		{"send_expect", `kind = "send_expect"
send = "PING\r\n"
expect = "+PONG"
expect_regex = "^\\+PONG"
jitter = "0s"`, func(h *Health) {
			h.Kind, h.Send, h.Expect, h.Jitter = CheckSendExpect, "PING\r\n", "+PONG", 0
		}},
		{"https", `kind = "https"
method = "HEAD"
path = "/primary"
host = "db.internal"
status = "200"
body = "running"
sni = "db.internal"
verify = true
ca_file = "` + ca + `"`, func(h *Health) {
			h.Kind, h.Method, h.Path, h.Host, h.StatusMin, h.StatusMax, h.Body = CheckHTTPS, "HEAD", "/primary", "db.internal", 200, 200, "running"
			h.SNI, h.Verify, h.CAFile = "db.internal", true, ca
		}},
		{"tls", `kind = "tls"
sni = "db.internal"`, func(h *Health) { h.Kind, h.SNI = CheckTLS, "db.internal" }},
		{"redis", `kind = "redis"
username = "probe"
password_file = "` + pw + `"
role = "primary"`, func(h *Health) {
			h.Kind, h.Username, h.Password, h.Role = CheckRedis, "probe", "s3cret", health.RolePrimary
		}},
		{"postgres", `kind = "postgres"
user = "sluice"
password = "pw"
database = "app"
role = "replica"`, func(h *Health) {
			h.Kind, h.User, h.Password, h.Database, h.Role = CheckPostgres, "sluice", "pw", "app", health.RoleReplica
		}},
		{"mysql", `kind = "mysql"
user = "sluice"
role = "primary"`, func(h *Health) { h.Kind, h.User, h.Role = CheckMySQL, "sluice", health.RolePrimary }},
		{"dns", `kind = "dns"
name = "example.com"
type = "AAAA"`, func(h *Health) { h.Kind, h.Name, h.Type = CheckDNS, "example.com", 28 }},
		{"udp_send_expect", `kind = "udp_send_expect"
send = "ping"
expect = "pong"`, func(h *Health) { h.Kind, h.Send, h.Expect = CheckUDPSendExpect, "ping", "pong" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseFake(poolWith("[pools.db.health]\n" + tt.toml))
			if err != nil {
				t.Fatal(err)
			}
			want := defaultHealth()
			tt.want(&want)
			got := *cfg.Pools[0].Health
			if got.ExpectRegex != nil {
				if got.ExpectRegex.String() != `^\+PONG` {
					t.Errorf("expect_regex %v", got.ExpectRegex)
				}
				got.ExpectRegex = nil
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
			b := cfg.Pools[0].Backends[0]
			wantAddr := b.Address
			if want.Port != 0 {
				wantAddr = netip.AddrPortFrom(b.Address.Addr(), want.Port)
			}
			if b.Health.Address != wantAddr {
				t.Errorf("check address %v, want %v", b.Health.Address, wantAddr)
			}
		})
	}
}

func TestParseBackendHealth(t *testing.T) {
	cfg, err := parseFake(`
[pools.db]
on_down = "close"
slow_start = "30s"
passive_failures = 0
[pools.db.health]
kind = "http"
path = "/primary"
port = 8008
[[pools.db.backends]]
address = "10.0.0.3:5432"
state = "drain"
[pools.db.backends.health]
address = "10.0.0.30:8008"
path = "/leader"
[[pools.db.backends]]
address = "10.0.0.4:5432"
backup = true
state = "maintenance"
[pools.db.backends.health]
port = 9000
interval = "5s"
[[pools.db.backends]]
address = "10.0.0.5:5432"
` + listenerPG)
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Pools[0]
	if p.OnDown != OnDownClose || p.SlowStart != 30*time.Second || p.PassiveFailures != 0 || p.PassiveBackoff != 10*time.Second {
		t.Errorf("pool %+v", p)
	}
	b := p.Backends
	if b[0].State != pool.Drain || b[0].Backup || b[1].State != pool.Maintenance || !b[1].Backup || b[2].State != pool.Enabled {
		t.Errorf("backends %+v", b)
	}
	checks := []struct {
		addr     string
		path     string
		interval time.Duration
		jitter   time.Duration
	}{
		{"10.0.0.30:8008", "/leader", 2 * time.Second, 200 * time.Millisecond},
		{"10.0.0.4:9000", "/primary", 5 * time.Second, 500 * time.Millisecond},
		{"10.0.0.5:8008", "/primary", 2 * time.Second, 200 * time.Millisecond},
	}
	for i, c := range checks {
		h := b[i].Health
		if h.Address != netip.MustParseAddrPort(c.addr) || h.Path != c.path || h.Interval != c.interval || h.Jitter != c.jitter || h.Kind != CheckHTTP {
			t.Errorf("backend %d check %+v, want %+v", i, h, c)
		}
	}
	if p.Health.Path != "/primary" || p.Health.Address.IsValid() {
		t.Errorf("the pool's health changed: %+v", p.Health)
	}
}

// TestParseRelativeFiles checks that password_file and ca_file are read
// relative to the configuration file.
func TestParseRelativeFiles(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "pw"), []byte("secret\r\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "ca.pem"), []byte(testCA), 0o600)
	text := poolWith("[pools.db.health]\nkind = \"postgres\"\nuser = \"u\"\npassword_file = \"pw\"\n") + `
[pools.tls]
health = { kind = "tls", verify = true, ca_file = "ca.pem" }
[[pools.tls.backends]]
address = "10.0.0.9:443"
`
	file := filepath.Join(dir, "sluice.toml")
	os.WriteFile(file, []byte(text), 0o600)
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if h := cfg.Pool("db").Health; h.Password != "secret" {
		t.Errorf("password %q", h.Password)
	}
	if h := cfg.Pool("tls").Health; h.CAFile != filepath.Join(dir, "ca.pem") {
		t.Errorf("ca_file %q", h.CAFile)
	}
}

// badHealthConfigs are refused with these errors; line 1 is the pool's
// first key.
var badHealthConfigs = []struct {
	name string
	toml string
	want []string
}{
	{"on_down", poolWith(`on_down = "kill"`), []string{`t.toml:2: pools.db.on_down: unknown on_down "kill": want "keep" or "close"`}},
	{"pool durations", poolWith("slow_start = \"-1s\"\npassive_backoff = \"0s\""),
		[]string{"t.toml:2: pools.db.slow_start: must not be negative", "t.toml:3: pools.db.passive_backoff: must be greater than zero"}},
	{"passive_failures", poolWith("passive_failures = -1"), []string{"t.toml:2: pools.db.passive_failures: must be 0..1000, not -1"}},
	{"health not a table", poolWith(`health = "tcp"`), []string{"t.toml:2: pools.db.health: must be a table, not a string"}},
	{"kind", poolWith("[pools.db.health]\nkind = \"icmp\""),
		[]string{`t.toml:3: pools.db.health.kind: unknown kind "icmp": want tcp, send_expect, http, https, tls, redis, postgres, mysql, dns, udp_send_expect`}},
	{"unknown key", poolWith("[pools.db.health]\nintreval = \"1s\""),
		[]string{"t.toml:3: pools.db.health.intreval: unknown key; allowed here: kind, interval, timeout, jitter, rise, fall, port, send, expect"}},
	{"key of another kind", poolWith("[pools.db.health]\nkind = \"tcp\"\npath = \"/\"\nrole = \"primary\""),
		[]string{`t.toml:4: pools.db.health.path: applies only to kind = http or https, not "tcp"`,
			`t.toml:5: pools.db.health.role: applies only to kind = redis or postgres or mysql, not "tcp"`}},
	{"address at pool level", poolWith("[pools.db.health]\naddress = \"10.0.0.1:1\""),
		[]string{"t.toml:3: pools.db.health.address: unknown key"}},
	{"timings", poolWith("[pools.db.health]\ninterval = \"0s\"\ntimeout = 5\nrise = 0\nfall = 101\nport = 70000"),
		[]string{"t.toml:3: pools.db.health.interval: must be greater than zero", `t.toml:4: pools.db.health.timeout: must be a string with a unit`,
			"t.toml:5: pools.db.health.rise: must be 1..100, not 0", "t.toml:6: pools.db.health.fall: must be 1..100, not 101",
			"t.toml:7: pools.db.health.port: must be 0..65535, not 70000"}},
	{"timeout over interval", poolWith("[pools.db.health]\ninterval = \"1s\"\ntimeout = \"2s\""),
		[]string{"t.toml:4: pools.db.health.timeout: timeout 2s is longer than the interval 1s"}},
	{"jitter over half", poolWith("[pools.db.health]\njitter = \"1.5s\""),
		[]string{"t.toml:3: pools.db.health.jitter: jitter 1.5s is more than half the interval 2s"}},
	{"regex", poolWith("[pools.db.health]\nkind = \"send_expect\"\nexpect_regex = \"(\""),
		[]string{"t.toml:4: pools.db.health.expect_regex: error parsing regexp: missing closing )"}},
	{"http values", poolWith("[pools.db.health]\nkind = \"http\"\nmethod = \"get\"\npath = \"health\"\nstatus = \"399-200\"\nhost = \"a b\""),
		[]string{`t.toml:4: pools.db.health.method: invalid method "get"`, `t.toml:5: pools.db.health.path: invalid path "health"`,
			`t.toml:6: pools.db.health.status: invalid status "399-200"`, `t.toml:7: pools.db.health.host: invalid host "a b"`}},
	{"status", poolWith("[pools.db.health]\nkind = \"https\"\nstatus = \"2xx\""), []string{`t.toml:4: pools.db.health.status: invalid status "2xx"`}},
	{"verify not bool", poolWith("[pools.db.health]\nkind = \"tls\"\nverify = \"yes\""),
		[]string{"t.toml:4: pools.db.health.verify: must be true or false, not a string"}},
	{"ca_file missing", poolWith("[pools.db.health]\nkind = \"tls\"\nverify = true\nca_file = \"/nonexistent/ca.pem\""),
		[]string{"t.toml:5: pools.db.health.ca_file: reading CA file: open /nonexistent/ca.pem"}},
	{"ca_file without verify", poolWith("[pools.db.health]\nkind = \"tls\"\nca_file = \"/nonexistent/ca.pem\""),
		[]string{"t.toml:4: pools.db.health.ca_file: is used only with verify = true"}},
	{"role", poolWith("[pools.db.health]\nkind = \"postgres\"\nrole = \"leader\""),
		[]string{`t.toml:4: pools.db.health.role: unknown role "leader": want "primary" or "replica"`}},
	{"password twice", poolWith("[pools.db.health]\nkind = \"redis\"\npassword = \"a\"\npassword_file = \"/nonexistent\""),
		[]string{"t.toml:5: pools.db.health.password_file: give password or password_file, not both"}},
	{"password_file missing", poolWith("[pools.db.health]\nkind = \"redis\"\npassword_file = \"/nonexistent/pw\""),
		[]string{"t.toml:4: pools.db.health.password_file: reading password file: open /nonexistent/pw"}},
	{"password_file a device", poolWith("[pools.db.health]\nkind = \"redis\"\npassword_file = \"/dev/zero\""),
		[]string{"t.toml:4: pools.db.health.password_file: reading password file: /dev/zero is not a regular file"}},
	{"redis username alone", poolWith("[pools.db.health]\nkind = \"redis\"\nusername = \"u\""),
		[]string{"t.toml:4: pools.db.health.username: needs a password"}},
	{"mysql role without user", poolWith("[pools.db.health]\nkind = \"mysql\"\nrole = \"primary\""),
		[]string{"t.toml:4: pools.db.health.role: needs user"}},
	{"postgres role without user", poolWith("[pools.db.health]\nkind = \"postgres\"\nrole = \"primary\""),
		[]string{"t.toml:4: pools.db.health.role: needs user: a postgres check with password or role logs in; add user = the role it logs in as"}},
	{"postgres password without user", poolWith("[pools.db.health]\nkind = \"postgres\"\ndatabase = \"app\"\npassword = \"pw\""),
		[]string{"t.toml:5: pools.db.health.password: needs user: a postgres check"}},
	{"postgres role without user, per backend", `[pools.db]
[pools.db.health]
kind = "postgres"
[[pools.db.backends]]
address = "10.0.0.3:5432"
[pools.db.backends.health]
role = "replica"
` + listenerPG, []string{"t.toml:7: pools.db.backends[0].health.role: needs user: a postgres check"}},
	{"passive_backoff with active checks", poolWith("passive_backoff = \"30s\"\n[pools.db.health]\nkind = \"tcp\""),
		[]string{"t.toml:2: pools.db.passive_backoff: applies only to pools without [pools.db.health]: with active checks an ejection ends after rise passing checks; remove passive_backoff"}},
	{"dns type", poolWith("[pools.db.health]\nkind = \"dns\"\ntype = \"AXFR\""),
		[]string{`t.toml:4: pools.db.health.type: unknown DNS type "AXFR"`}},
	{"backend keys", `[pools.db]
[[pools.db.backends]]
address = "10.0.0.3:5432"
backup = "yes"
state = "off"
` + listenerPG, []string{"t.toml:4: pools.db.backends[0].backup: must be true or false, not a string",
		`t.toml:5: pools.db.backends[0].state: unknown state "off": want enabled, drain or maintenance`}},
	{"override without pool health", `[pools.db]
[[pools.db.backends]]
address = "10.0.0.3:5432"
[pools.db.backends.health]
port = 1
` + listenerPG, []string{"t.toml:4: pools.db.backends[0].health: overrides nothing: the pool has no [pools.db.health] table"}},
	{"override errors", `[pools.db]
[pools.db.health]
kind = "tcp"
[[pools.db.backends]]
address = "10.0.0.3:5432"
[pools.db.backends.health]
kind = "http"
port = 1
address = "10.0.0.30"
[[pools.db.backends]]
address = "10.0.0.4:5432"
[pools.db.backends.health]
path = "/"
timeout = "3s"
` + listenerPG, []string{"t.toml:7: pools.db.backends[0].health.kind: cannot be set per backend",
		"t.toml:8: pools.db.backends[0].health.port: give address or port, not both",
		`t.toml:9: pools.db.backends[0].health.address: "10.0.0.30": want IP:port`,
		`t.toml:13: pools.db.backends[1].health.path: applies only to kind = http or https, not "tcp"`,
		"t.toml:14: pools.db.backends[1].health.timeout: timeout 3s is longer than the interval 2s"}},
	{"override keys redefined later", `[pools.db]
[pools.db.health]
[[pools.db.backends]]
address = "10.0.0.3:5432"
[pools.db.backends.health]
rise = 0
[[pools.db.backends]]
address = "10.0.0.4:5432"
[pools.db.backends.health]
rise = 200
` + listenerPG, []string{"t.toml:6: pools.db.backends[0].health.rise: must be 1..100, not 0",
		"t.toml:10: pools.db.backends[1].health.rise: must be 1..100, not 200"}},
}

// TestParseLoginAndBackoff checks what the refusals of a postgres login
// without user and of passive_backoff with [health] leave accepted.
func TestParseLoginAndBackoff(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want func(p Pool) bool
	}{
		{"postgres startup exchange without user", poolWith("[pools.db.health]\nkind = \"postgres\"\ndatabase = \"app\""),
			func(p Pool) bool { return p.Health.User == "" && p.Health.Database == "app" }},
		{"postgres user in the pool, role per backend", `[pools.db]
[pools.db.health]
kind = "postgres"
user = "probe"
[[pools.db.backends]]
address = "10.0.0.3:5432"
[pools.db.backends.health]
role = "replica"
` + listenerPG, func(p Pool) bool {
			h := p.Backends[0].Health
			return h.User == "probe" && h.Role == health.RoleReplica && p.Health.Role == health.RoleAny
		}},
		{"passive_backoff without active checks", poolWith("passive_backoff = \"1m\""),
			func(p Pool) bool { return p.Health == nil && p.PassiveBackoff == time.Minute }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseFake(tc.toml)
			if err != nil {
				t.Fatal(err)
			}
			if p := cfg.Pools[0]; !tc.want(p) {
				t.Errorf("pool %+v, health %+v", p, p.Health)
			}
		})
	}
}

func TestParseBadHealth(t *testing.T) {
	for _, tc := range badHealthConfigs {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFake(tc.toml)
			if err == nil {
				t.Fatal("parsed without error")
			}
			wantContains(t, err.Error(), tc.want...)
		})
	}
}

func TestEnumNames(t *testing.T) {
	for _, k := range []CheckKind{CheckTCP, CheckHTTPS, CheckUDPSendExpect} {
		var got CheckKind
		if err := got.UnmarshalText([]byte(k.String())); err != nil || got != k {
			t.Errorf("%v round trip: %v, %v", k, got, err)
		}
	}
	if CheckKind(99).String() != "CheckKind(99)" || OnDownClose.String() != "close" {
		t.Error("names")
	}
}

// testCA is a self-signed certificate, for ca_file.
const testCA = `-----BEGIN CERTIFICATE-----
MIIBhTCCASugAwIBAgIQIRi6zePL6mKjOipn+dNuaTAKBggqhkjOPQQDAjASMRAw
DgYDVQQKEwdBY21lIENvMB4XDTE3MTAyMDE5NDMwNloXDTE4MTAyMDE5NDMwNlow
EjEQMA4GA1UEChMHQWNtZSBDbzBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABD0d
7VNhbWvZLWPuj/RtHFjvtJBEwOkhbN/BnnE8rnZR8+sbwnc/KhCk3FhnpHZnQz7B
5aETbbIgmuvewdjvSBSjYzBhMA4GA1UdDwEB/wQEAwICpDATBgNVHSUEDDAKBggr
BgEFBQcDATAPBgNVHRMBAf8EBTADAQH/MCkGA1UdEQQiMCCCDmxvY2FsaG9zdDo1
NDUzgg4xMjcuMC4wLjE6NTQ1MzAKBggqhkjOPQQDAgNIADBFAiEA2zpJEPQyz6/l
Wf86aX6PepsntZv2GYlA5UpabfT2EZICICpJ5h/iI+i341gBmLiAFQOyTDT+/wQc
6MF9+Yw1Yy0t
-----END CERTIFICATE-----
`
