package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestListenerACME(t *testing.T) {
	head := "[listeners.t]\nbind = \"127.0.0.1:8443\"\npool = \"db\"\n[listeners.t.tls]\n"
	cfg, err := Parse("/etc/sluice/t.toml", []byte(head+
		"acme = { names = [\"a.example.com\", \"b.example.com\"], email = \"ops@example.com\", storage = \"acme\", renew_before = \"240h\" }\n"+poolDB))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Listeners[0].TLS.ACME
	if a == nil || len(a.Names) != 2 || a.Email != "ops@example.com" || a.Storage != filepath.Join("/etc/sluice", "acme") ||
		a.RenewBefore != 240*time.Hour || !strings.HasPrefix(a.CA, "https://acme-v02.api.letsencrypt.org/") {
		t.Errorf("acme: %+v", a)
	}
	if len(cfg.Listeners[0].TLS.Certificates) != 0 {
		t.Errorf("certificates: %v", cfg.Listeners[0].TLS.Certificates)
	}
	for _, tc := range []struct {
		name, acme, want string
	}{
		{"no storage", `{ names = ["a.example.com"] }`, "listeners.t.tls.acme.storage: required key is missing"},
		{"no names", `{ storage = "s" }`, "listeners.t.tls.acme.names: required key is missing"},
		{"empty names", `{ names = [], storage = "s" }`, "listeners.t.tls.acme.names: must name at least one host"},
		{"wildcard", `{ names = ["*.example.com"], storage = "s" }`, "wildcard, which TLS-ALPN-01 cannot prove"},
		{"ip", `{ names = ["192.0.2.1"], storage = "s" }`, "is an IP address"},
		{"one label", `{ names = ["localhost"], storage = "s" }`, "is not a public host name"},
		{"plain ca", `{ names = ["a.example.com"], storage = "s", ca = "http://ca/dir" }`, "listeners.t.tls.acme.ca: \"http://ca/dir\" is not an https URL"},
		{"unknown key", `{ names = ["a.example.com"], storage = "s", key_type = "rsa" }`, "listeners.t.tls.acme.key_type: unknown key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(head+"acme = "+tc.acme+"\n"+poolDB))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v\nwant %q", err, tc.want)
			}
		})
	}
}

// TestACMEExample: examples/acme.toml is valid as it is (it names no file
// that must exist).
func TestACMEExample(t *testing.T) {
	text, err := os.ReadFile("../examples/acme.toml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse("acme.toml", text); err != nil {
		t.Fatal(err)
	}
}

// TestACMEHTTP01: acme tables may use HTTP-01 when the file has a plain
// http listener to answer it, and only then.
func TestACMEHTTP01(t *testing.T) {
	tls := "[listeners.t]\nbind = \"127.0.0.1:8443\"\npool = \"db\"\n[listeners.t.tls]\n" +
		"acme = { names = [\"a.example.com\"], storage = \"acme\" }\n"
	for _, tc := range []struct {
		name, more string
		http01     bool
	}{
		{"no http listener", "", false},
		{"a plain http listener", "[listeners.h]\nbind = \"127.0.0.1:8080\"\nprotocol = \"http\"\npool = \"db\"\n", true},
		{"a tcp listener", "[listeners.h]\nbind = \"127.0.0.1:8080\"\npool = \"db\"\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("t.toml", []byte(tls+tc.more+poolDB))
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range cfg.Listeners {
				if l.TLS != nil && l.TLS.ACME.HTTP01 != tc.http01 {
					t.Errorf("HTTP01 %v, want %v", l.TLS.ACME.HTTP01, tc.http01)
				}
			}
		})
	}
}
