package config

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func TestTCPListenerTLS(t *testing.T) {
	_, a, _, _ := tlsFiles(t)
	head := "[listeners.t]\nbind = \"127.0.0.1:5433\"\npool = \"db\"\n"
	certs := fmt.Sprintf("cert_file = %q\nkey_file = %q\n", a.CertFile, a.KeyFile)
	tlsPool := "[pools.db]\ntls = { sni = \"db.internal\" }\n[[pools.db.backends]]\naddress = \"10.0.0.1:5432\"\n"

	cfg, err := Parse("t.toml", []byte(head+"[listeners.t.tls]\n"+certs+
		"alpn = [\"mqtt\"]\nhandshake_timeout = \"3s\"\n"+poolDB))
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Listeners[0].TLS
	if len(got.ALPN) != 1 || got.ALPN[0] != "mqtt" || got.HandshakeTimeout != 3*time.Second || got.StartTLS != "" {
		t.Errorf("got %+v", got)
	}
	cfg, err = Parse("t.toml", []byte(head+"[listeners.t.tls]\n"+certs+"starttls = \"postgres\"\n"+poolDB))
	if err != nil {
		t.Fatal(err)
	}
	got = cfg.Listeners[0].TLS
	if got.StartTLS != StartTLSPostgres || !got.RequireTLS || len(got.ALPN) != 1 || got.ALPN[0] != "postgresql" ||
		got.HandshakeTimeout != defaultHandshakeTimeout {
		t.Errorf("postgres: got %+v", got)
	}
	cfg, err = Parse("t.toml", []byte(head+"[listeners.t.tls]\n"+certs+"starttls = \"mysql\"\nrequire_tls = false\n"+poolDB))
	if err != nil {
		t.Fatal(err)
	}
	got = cfg.Listeners[0].TLS
	if got.StartTLS != StartTLSMySQL || got.RequireTLS || got.ALPN != nil {
		t.Errorf("mysql: got %+v", got)
	}
	// A PROXY header before the ClientHello, and before plain bytes to
	// TLS backends.
	for _, text := range []string{head + "proxy_protocol = \"v2\"\nproxy_protocol_from = [\"10.0.0.0/8\"]\n[listeners.t.tls]\n" + certs + poolDB,
		head + "proxy_protocol = \"v2\"\nproxy_protocol_from = [\"10.0.0.0/8\"]\n" + tlsPool} {
		if _, err := Parse("t.toml", []byte(text)); err != nil {
			t.Errorf("proxy_protocol with TLS: %v", err)
		}
	}
	// A plain listener in front of TLS backends.
	if _, err := Parse("t.toml", []byte(head+tlsPool)); err != nil {
		t.Errorf("pool with [tls] behind a TCP listener: %v", err)
	}

	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"require_tls without starttls", head + "[listeners.t.tls]\n" + certs + "require_tls = false\n" + poolDB,
			[]string{"listeners.t.tls.require_tls: is used only with starttls"}},
		{"unknown starttls", head + "[listeners.t.tls]\n" + certs + "starttls = \"smtp\"\n" + poolDB,
			[]string{"listeners.t.tls.starttls: unknown protocol \"smtp\": want \"postgres\" or \"mysql\""}},
		{"mysql with alpn", head + "[listeners.t.tls]\n" + certs + "starttls = \"mysql\"\nalpn = [\"x\"]\n" + poolDB,
			[]string{"listeners.t.tls.alpn: is not used with starttls = \"mysql\""}},
		{"postgres with other alpn", head + "[listeners.t.tls]\n" + certs + "starttls = \"postgres\"\nalpn = [\"x\"]\n" + poolDB,
			[]string{"listeners.t.tls.alpn: is \"postgresql\" with starttls"}},
		{"client_cert_header", head + "[listeners.t.tls]\n" + certs + "client_cert_header = \"X-A\"\n" + poolDB,
			[]string{"listeners.t.tls.client_cert_header: applies only to HTTP listeners"}},
		{"http listener", strings.Replace(head, "pool", "protocol = \"http\"\npool", 1) + "[listeners.t.tls]\n" + certs + "starttls = \"postgres\"\n" + poolDB,
			[]string{"listeners.t.tls.starttls: applies only to TCP listeners"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(tc.text))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

// TestTCPTLSExamples: examples/tls-tcp.toml, postgres-tls.toml and
// mysql-tls.toml are
// valid but for their certificate files, which exist only on a real host.
func TestTCPTLSExamples(t *testing.T) {
	for _, name := range []string{"tls-tcp.toml", "postgres-tls.toml", "mysql-tls.toml"} {
		text, err := os.ReadFile("../examples/" + name)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Parse(name, text)
		if err == nil {
			t.Fatalf("%s parsed without its certificate files", name)
		}
		for _, line := range strings.Split(strings.TrimSpace(err.Error()), "\n") {
			if !strings.HasSuffix(line, "no such file or directory") {
				t.Errorf("%s: an error other than a missing file: %s", name, line)
			}
		}
	}
}
