package config

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"sluice/internal/certs"
	"sluice/internal/certs/mint"
)

// tlsFiles makes two certificate pairs and a CA file in a temporary
// directory.
func tlsFiles(t *testing.T) (dir string, a, b certs.Pair, caFile string) {
	t.Helper()
	dir = t.TempDir()
	ca, err := mint.NewCA("config test CA")
	if err != nil {
		t.Fatal(err)
	}
	if a, err = ca.Issue(dir, "a", mint.ECDSA, "a.test"); err != nil {
		t.Fatal(err)
	}
	if b, err = ca.Issue(dir, "b", mint.RSA, "b.test"); err != nil {
		t.Fatal(err)
	}
	if caFile, err = ca.Write(dir); err != nil {
		t.Fatal(err)
	}
	return dir, a, b, caFile
}

func TestListenerTLS(t *testing.T) {
	dir, a, b, caFile := tlsFiles(t)
	text := fmt.Sprintf(`[listeners.web]
bind = "127.0.0.1:8443"
protocol = "http"
pool = "db"
[listeners.web.tls]
cert_file = "a.pem"
key_file = "a.key"
certificates = [{ cert_file = %q, key_file = %q }]
min_version = "1.3"
curves = ["SecP256r1MLKEM768", "X25519", "P-256"]
client_auth = "request"
client_ca_file = %q
client_cert_header = "X-Client-Subject"
reload_interval = "1m"
`, b.CertFile, b.KeyFile, caFile) + poolDB
	// Relative paths are read from the configuration file's directory.
	cfg, err := Parse(filepath.Join(dir, "sluice.toml"), []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	want := &ListenerTLS{
		Certificates:     []certs.Pair{a, b},
		MinVersion:       tls.VersionTLS13,
		Curves:           []tls.CurveID{tls.SecP256r1MLKEM768, tls.X25519, tls.CurveP256},
		ClientAuth:       tls.VerifyClientCertIfGiven,
		ClientCAFile:     caFile,
		ClientCertHeader: "X-Client-Subject",
		ReloadInterval:   time.Minute,
		ExpiryWarning:    defaultExpiryWarning,
	}
	if got := cfg.Listeners[0].TLS; !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}

	min := fmt.Sprintf("[listeners.web]\nbind = \"127.0.0.1:8443\"\nprotocol = \"http\"\npool = \"db\"\n"+
		"[listeners.web.tls]\ncert_file = %q\nkey_file = %q\n", a.CertFile, a.KeyFile) + poolDB
	cfg, err = Parse("t.toml", []byte(min))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Listeners[0].TLS; got.MinVersion != tls.VersionTLS12 || got.Curves != nil || got.ClientAuth != tls.NoClientCert ||
		got.ReloadInterval != defaultTLSReload {
		t.Errorf("defaults: %+v", got)
	}
}

func TestListenerTLSErrors(t *testing.T) {
	dir, a, b, caFile := tlsFiles(t)
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	head := "[listeners.web]\nbind = \"127.0.0.1:8443\"\nprotocol = \"http\"\npool = \"db\"\n[listeners.web.tls]\n"
	pair := fmt.Sprintf("cert_file = %q\nkey_file = %q\n", a.CertFile, a.KeyFile)
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"no certificate", "min_version = \"1.2\"\n", []string{"t.toml:5: listeners.web.tls.cert_file: no certificate"}},
		{"key without cert", fmt.Sprintf("key_file = %q\n", a.KeyFile), []string{"listeners.web.tls.cert_file: required key is missing"}},
		{"mismatched key", fmt.Sprintf("cert_file = %q\nkey_file = %q\n", a.CertFile, b.KeyFile),
			[]string{"t.toml:6: listeners.web.tls.cert_file: loading certificate", "does not match"}},
		{"garbage in an entry", pair + fmt.Sprintf("[[listeners.web.tls.certificates]]\ncert_file = %q\nkey_file = %q\n", garbage, a.KeyFile),
			[]string{"t.toml:9: listeners.web.tls.certificates[0].cert_file: loading certificate"}},
		{"old version", pair + "min_version = \"1.1\"\n", []string{"t.toml:8: listeners.web.tls.min_version: unknown version \"1.1\""}},
		{"unknown curve", pair + "curves = [\"X448\"]\n", []string{"listeners.web.tls.curves: unknown curve \"X448\""}},
		{"client auth without CAs", pair + "client_auth = \"require\"\n", []string{"client_auth: needs client_ca_file"}},
		{"CAs without client auth", pair + fmt.Sprintf("client_ca_file = %q\n", caFile), []string{"client_ca_file: is used only with client_auth"}},
		{"bad client auth", pair + fmt.Sprintf("client_auth = \"always\"\nclient_ca_file = %q\n", caFile), []string{"unknown mode \"always\""}},
		{"header without client auth", pair + "client_cert_header = \"X-Subject\"\n", []string{"client_cert_header: is used only with client_auth"}},
		{"unknown key", pair + "ciphers = []\n", []string{"listeners.web.tls.ciphers: unknown key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(head+tc.body+poolDB))
			if err == nil {
				t.Fatal("parsed")
			}
			wantContains(t, err.Error(), tc.want...)
		})
	}
}

// TestHTTPSExample: examples/https.toml is valid but for its certificate
// files, which exist only on a real host.
func TestHTTPSExample(t *testing.T) {
	text, err := os.ReadFile("../examples/https.toml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse("https.toml", text)
	if err == nil {
		t.Fatal("parsed without its certificate files")
	}
	for _, line := range strings.Split(strings.TrimSpace(err.Error()), "\n") {
		if !strings.HasSuffix(line, "no such file or directory") {
			t.Errorf("an error other than a missing file: %s", line)
		}
	}
}

func TestPoolTLS(t *testing.T) {
	dir, a, _, caFile := tlsFiles(t)
	pool := fmt.Sprintf(`
[pools.app]
[pools.app.tls]
sni = "app.internal"
ca_file = %q
cert_file = %q
key_file = %q
alpn = ["h2"]
[pools.app.health]
kind = "https"
path = "/healthz"
[[pools.app.backends]]
address = "10.0.0.1:443"
`, caFile, a.CertFile, a.KeyFile)
	web := "[listeners.web]\nbind = \"127.0.0.1:8080\"\nprotocol = \"http\"\npool = \"app\"\n"
	cfg, err := Parse(filepath.Join(dir, "t.toml"), []byte(web+pool))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Pool("app")
	want := &PoolTLS{SNI: "app.internal", Verify: true, CAFile: caFile, ClientCert: a, ALPN: []string{"h2"}}
	if !reflect.DeepEqual(p.TLS, want) {
		t.Errorf("got  %+v\nwant %+v", p.TLS, want)
	}
	// The check shares the pool's settings, per backend too.
	h := p.Backends[0].Health
	if h.SNI != "app.internal" || !h.Verify || h.CAFile != caFile || h.ClientCert != a {
		t.Errorf("the https check does not share the pool's tls: %+v", h)
	}

	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"http check on TLS backends", web + "[pools.app]\ntls = {}\nhealth = { kind = \"http\" }\n[[pools.app.backends]]\naddress = \"10.0.0.1:443\"\n",
			[]string{"pools.app.health.kind: the pool's backends speak TLS ([pools.app.tls]): use kind = \"https\""}},
		{"check sets its own sni", web + "[pools.app]\ntls = {}\nhealth = { kind = \"tls\", sni = \"x\" }\n[[pools.app.backends]]\naddress = \"10.0.0.1:443\"\n",
			[]string{"pools.app.health.sni: is set in [pools.app.tls], which this check shares"}},
		{"h2c and tls", web + "[pools.app]\nh2c = true\ntls = {}\n[[pools.app.backends]]\naddress = \"10.0.0.1:443\"\n",
			[]string{"pools.app.h2c: is HTTP/2 over cleartext"}},
		{"bad alpn", web + "[pools.app]\ntls = { alpn = [\"h3\"] }\n[[pools.app.backends]]\naddress = \"10.0.0.1:443\"\n",
			[]string{"pools.app.tls.alpn: unknown protocol \"h3\""}},
		{"udp listener", "[listeners.t]\nprotocol = \"udp\"\nbind = \"127.0.0.1:1\"\npool = \"app\"\n[pools.app]\ntls = {}\n[[pools.app.backends]]\naddress = \"10.0.0.1:443\"\n",
			[]string{"listeners.t.pool: pool \"app\" has [tls], which a UDP listener cannot speak"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(tc.text))
			if err == nil {
				t.Fatal("parsed")
			}
			wantContains(t, err.Error(), tc.want...)
		})
	}
}

func TestSNIRoutes(t *testing.T) {
	pools := "\n[pools.a]\n[[pools.a.backends]]\naddress = \"10.0.0.1:443\"\n[pools.b]\n[[pools.b.backends]]\naddress = \"10.0.0.2:443\"\n"
	cfg, err := Parse("t.toml", []byte(`[listeners.edge]
bind = ":443"
client_hello_timeout = "2s"
[[listeners.edge.sni_routes]]
names = ["A.example.com.", "*.b.example.com"]
pool = "a"
[[listeners.edge.sni_routes]]
names = "db.test"
pool = "b"
`+pools))
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Listeners[0]
	want := []SNIRoute{{Names: []string{"a.example.com", "*.b.example.com"}, Pool: "a"}, {Names: []string{"db.test"}, Pool: "b"}}
	if !reflect.DeepEqual(l.SNIRoutes, want) || l.Pool != "" || l.ClientHelloTimeout != 2*time.Second {
		t.Errorf("got %+v pool %q timeout %v", l.SNIRoutes, l.Pool, l.ClientHelloTimeout)
	}
	head := "[listeners.edge]\nbind = \":443\"\n"
	for _, tc := range []struct {
		name, text string
		want       string
	}{
		{"bad name", head + "[[listeners.edge.sni_routes]]\nnames = [\"a.*.test\"]\npool = \"a\"\n", `sni_routes[0].names: "a.*.test" is not a host name`},
		{"name twice", head + "[[listeners.edge.sni_routes]]\nnames = [\"a.test\"]\npool = \"a\"\n[[listeners.edge.sni_routes]]\nnames = [\"a.test\"]\npool = \"b\"\n",
			`sni_routes[1].names: "a.test" is routed by sni_routes[0] already`},
		{"unknown pool", head + "[[listeners.edge.sni_routes]]\nnames = [\"a.test\"]\npool = \"c\"\n", `sni_routes[0].pool: no pool "c"`},
		{"timeout without routes", head + "pool = \"a\"\nclient_hello_timeout = \"1s\"\n", "client_hello_timeout: is used only with sni_routes"},
		{"with proxy_protocol", head + "proxy_protocol = \"v2\"\nproxy_protocol_from = [\"10.0.0.0/8\"]\n[[listeners.edge.sni_routes]]\nnames = [\"a.test\"]\npool = \"a\"\n",
			"sni_routes: cannot be combined with proxy_protocol yet"},
		{"on HTTP", "[listeners.edge]\nbind = \":443\"\nprotocol = \"http\"\npool = \"a\"\n[[listeners.edge.sni_routes]]\nnames = [\"a.test\"]\npool = \"a\"\n",
			`sni_routes: applies only to protocol = "tcp"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(tc.text+pools))
			if err == nil {
				t.Fatal("parsed")
			}
			wantContains(t, err.Error(), tc.want)
		})
	}
}
