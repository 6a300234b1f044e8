package certs_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/internal/certs"
	"sluice/internal/certs/mint"
)

func mustCA(t *testing.T) *mint.CA {
	t.Helper()
	ca, err := mint.NewCA("certs test CA")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t *testing.T, ca *mint.CA, dir, base string, kt mint.KeyType, names ...string) certs.Pair {
	t.Helper()
	p, err := ca.Issue(dir, base, kt, names...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// syncBuf is a log sink safe for the watcher goroutine and the test.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func newStore(t *testing.T, o certs.Options) (*certs.Store, *syncBuf) {
	t.Helper()
	buf := new(syncBuf)
	o.Logger = slog.New(slog.NewTextHandler(buf, nil))
	s, err := certs.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s, buf
}

func TestPickByServerName(t *testing.T) {
	dir, ca := t.TempDir(), mustCA(t)
	def := issue(t, ca, dir, "default", mint.ECDSA, "default.test")
	exact := issue(t, ca, dir, "exact", mint.ECDSA, "www.example.com", "example.com")
	wild := issue(t, ca, dir, "wild", mint.ECDSA, "*.example.com")
	rsaOnly := issue(t, ca, dir, "rsa", mint.RSA, "api.example.org")
	ecOnly := issue(t, ca, dir, "ec", mint.ECDSA, "api.example.org")
	s, _ := newStore(t, certs.Options{Pairs: []certs.Pair{def, exact, wild, rsaOnly, ecOnly}})
	tls13 := []uint16{tls.TLS_AES_128_GCM_SHA256}
	rsaSchemes := []tls.SignatureScheme{tls.PSSWithSHA256}
	ecSchemes := []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256, tls.PSSWithSHA256}
	for _, tc := range []struct {
		name, sni string
		schemes   []tls.SignatureScheme
		want      string // a DNS name of the expected certificate
		wantRSA   bool
	}{
		{"exact", "www.example.com", ecSchemes, "www.example.com", false},
		{"exact is case-insensitive", "WWW.Example.COM.", ecSchemes, "www.example.com", false},
		{"exact beats wildcard", "example.com", ecSchemes, "www.example.com", false},
		{"wildcard", "shop.example.com", ecSchemes, "*.example.com", false},
		{"wildcard covers one label only", "a.b.example.com", ecSchemes, "default.test", false},
		{"unknown name gets the default", "nope.test", ecSchemes, "default.test", false},
		{"no name gets the default", "", ecSchemes, "default.test", false},
		{"ECDSA when the client takes it", "api.example.org", ecSchemes, "api.example.org", false},
		{"RSA for an RSA-only client", "api.example.org", rsaSchemes, "api.example.org", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hello := &tls.ClientHelloInfo{ServerName: tc.sni, CipherSuites: tls13,
				SupportedVersions: []uint16{tls.VersionTLS13}, SignatureSchemes: tc.schemes,
				SupportedCurves: []tls.CurveID{tls.CurveP256}}
			c, err := s.GetCertificate(hello)
			if err != nil {
				t.Fatal(err)
			}
			if c.Leaf.DNSNames[0] != tc.want {
				t.Errorf("got the certificate for %v, want %s", c.Leaf.DNSNames, tc.want)
			}
			_, isRSA := c.PrivateKey.(*rsa.PrivateKey)
			if _, isEC := c.PrivateKey.(*ecdsa.PrivateKey); isRSA != tc.wantRSA || isEC == tc.wantRSA {
				t.Errorf("RSA key = %v, want %v", isRSA, tc.wantRSA)
			}
		})
	}
}

func TestCovers(t *testing.T) {
	dir, ca := t.TempDir(), mustCA(t)
	def := issue(t, ca, dir, "default", mint.ECDSA, "default.test")
	wild := issue(t, ca, dir, "wild", mint.ECDSA, "*.example.com")
	s, _ := newStore(t, certs.Options{Pairs: []certs.Pair{def, wild}})
	for _, tc := range []struct {
		sni, host string
		want      bool
	}{
		{"a.example.com", "a.example.com", true},
		{"a.example.com", "b.example.com", true}, // coalescing the certificate allows
		{"a.example.com", "default.test", false},
		{"default.test", "a.example.com", false},
		{"unknown.test", "default.test", true}, // the default was served
	} {
		if got := s.Covers(tc.sni, tc.host); got != tc.want {
			t.Errorf("Covers(%q, %q) = %v, want %v", tc.sni, tc.host, got, tc.want)
		}
	}
}

func TestNewRefusesBadPairs(t *testing.T) {
	dir, ca := t.TempDir(), mustCA(t)
	a := issue(t, ca, dir, "a", mint.ECDSA, "a.test")
	b := issue(t, ca, dir, "b", mint.ECDSA, "b.test")
	for _, tc := range []struct {
		name string
		pair certs.Pair
		want string
	}{
		{"key of another certificate", certs.Pair{CertFile: a.CertFile, KeyFile: b.KeyFile}, "private key does not match"},
		{"missing file", certs.Pair{CertFile: dir + "/none.pem", KeyFile: a.KeyFile}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := certs.New(certs.Options{Pairs: []certs.Pair{tc.pair}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error with %q", err, tc.want)
			}
		})
	}
	if _, err := certs.New(certs.Options{}); err != certs.ErrNoCertificates {
		t.Errorf("New with no pairs: %v", err)
	}
}

func serial(t *testing.T, s *certs.Store, sni string) string {
	t.Helper()
	c, _ := s.GetCertificate(&tls.ClientHelloInfo{ServerName: sni})
	return c.Leaf.SerialNumber.String()
}

func TestReloadKeepsOldOnBadFile(t *testing.T) {
	dir, ca := t.TempDir(), mustCA(t)
	p := issue(t, ca, dir, "site", mint.ECDSA, "site.test")
	s, logs := newStore(t, certs.Options{Pairs: []certs.Pair{p}, ReloadInterval: -1})
	first := serial(t, s, "site.test")

	// A renewal: the new pair is served.
	issue(t, ca, dir, "site", mint.ECDSA, "site.test")
	s.Check()
	second := serial(t, s, "site.test")
	if second == first {
		t.Fatal("a renewed certificate was not reloaded")
	}
	if !strings.Contains(logs.String(), "certificate reloaded") {
		t.Errorf("no reload logged:\n%s", logs)
	}

	// A broken file: the loaded pair stays, and the failure is logged once.
	if err := os.WriteFile(p.CertFile, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.Check()
	s.Check()
	if got := serial(t, s, "site.test"); got != second {
		t.Fatal("a broken file replaced the loaded certificate")
	}
	if n := strings.Count(logs.String(), "reloading certificate failed"); n != 1 {
		t.Errorf("%d failures logged, want 1:\n%s", n, logs)
	}

	// Fixed again: reloaded.
	issue(t, ca, dir, "site", mint.ECDSA, "site.test")
	s.Check()
	if got := serial(t, s, "site.test"); got == second {
		t.Fatal("the fixed certificate was not reloaded")
	}
}

func TestWatcherReloads(t *testing.T) {
	dir, ca := t.TempDir(), mustCA(t)
	p := issue(t, ca, dir, "site", mint.ECDSA, "site.test")
	s, _ := newStore(t, certs.Options{Pairs: []certs.Pair{p}, ReloadInterval: 10 * time.Millisecond})
	s.Start()
	defer s.Stop()
	first := serial(t, s, "site.test")
	issue(t, ca, dir, "site", mint.ECDSA, "site.test")
	deadline := time.Now().Add(10 * time.Second)
	for serial(t, s, "site.test") == first {
		if time.Now().After(deadline) {
			t.Fatal("the watcher did not reload the renewed certificate")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.Stop() // twice is fine
}

func TestExpiryWarning(t *testing.T) {
	dir, ca := t.TempDir(), mustCA(t)
	p, err := ca.IssueWith(dir, "soon", mint.ECDSA, mint.Options{NotAfter: time.Now().Add(10 * 24 * time.Hour)}, "soon.test")
	if err != nil {
		t.Fatal(err)
	}
	far := issue(t, ca, dir, "far", mint.ECDSA, "far.test")
	now := time.Now()
	s, logs := newStore(t, certs.Options{Pairs: []certs.Pair{p, far}, ReloadInterval: -1, Now: func() time.Time { return now }})
	if n := strings.Count(logs.String(), "certificate expires soon"); n != 1 || !strings.Contains(logs.String(), "days_left=9") {
		t.Fatalf("want one warning with days_left=9:\n%s", logs)
	}
	s.Check()
	if n := strings.Count(logs.String(), "expires soon"); n != 1 {
		t.Errorf("warned %d times within a day", n)
	}
	now = now.Add(25 * time.Hour)
	s.Check()
	if n := strings.Count(logs.String(), "expires soon"); n != 2 {
		t.Errorf("warned %d times after a day, want 2", n)
	}
	if exp := s.Expiries(); len(exp) != 2 || exp[0].Names[0] != "soon.test" {
		t.Errorf("Expiries() = %+v", exp)
	}
}
