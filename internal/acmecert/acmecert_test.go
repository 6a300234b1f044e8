package acmecert

import (
	"crypto/tls"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"sluice/internal/certs/mint"
)

// Wrap gives the Manager its names and the CA's validations, the files
// the rest, without asking any CA.
func TestWrapRoutes(t *testing.T) {
	m := New(Options{Names: []string{"a.example.com"}, Storage: t.TempDir(), CA: "https://127.0.0.1:1/dir"})
	errFiles := errors.New("from files")
	get := m.Wrap(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, errFiles })
	for _, tc := range []struct {
		name  string
		hello tls.ClientHelloInfo
		acme  bool
	}{
		{"its name", tls.ClientHelloInfo{ServerName: "a.example.com"}, true},
		{"its name, other case and a dot", tls.ClientHelloInfo{ServerName: "A.Example.com."}, true},
		{"a validation", tls.ClientHelloInfo{ServerName: "other.example.com", SupportedProtos: []string{ALPNProto}}, true},
		{"another name", tls.ClientHelloInfo{ServerName: "b.example.com"}, false},
		{"no name", tls.ClientHelloInfo{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := m.Covers(&tc.hello); got != tc.acme {
				t.Errorf("Covers %v, want %v", got, tc.acme)
			}
			if tc.hello.SupportedProtos != nil {
				return // a validation without its token: autocert's error
			}
			_, err := get(&tc.hello)
			if fromFiles := errors.Is(err, errFiles); fromFiles == tc.acme {
				t.Errorf("error %v: from files %v, want %v", err, fromFiles, !tc.acme)
			}
		})
	}
}

func TestCheckNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"a.example.com", true}, {"*.example.com", false}, {"192.0.2.1", false},
		{"2001:db8::1", false}, {"localhost", false}, {"example.com.", true},
	} {
		if err := CheckNames([]string{tc.name}); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// HTTP01 answers a validation with the token its Manager stored, for the
// Manager's names only, whatever port the CA asked on; a Manager without
// Options.HTTP01, or removed, answers none.
func TestHTTP01(t *testing.T) {
	storage := t.TempDir()
	// Where autocert keeps an HTTP-01 token while the CA validates it.
	if err := os.WriteFile(filepath.Join(storage, "tok+http-01"), []byte("tok.keyauth"), 0o600); err != nil {
		t.Fatal(err)
	}
	on := New(Options{Names: []string{"a.example.com"}, Storage: storage, CA: "https://127.0.0.1:1/dir", HTTP01: true})
	off := New(Options{Names: []string{"b.example.com"}, Storage: storage, CA: "https://127.0.0.1:1/dir"})
	var h HTTP01
	h.Add(on)
	h.Add(off)
	for _, tc := range []struct {
		name, host string
		handled    bool
	}{
		{"its name", "a.example.com", true},
		{"its name, other case and a dot", "A.example.com.", true},
		{"a name without HTTP-01", "b.example.com", false},
		{"another name", "c.example.com", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hd := h.Handler(tc.host)
			if (hd != nil) != tc.handled {
				t.Fatalf("handled %v, want %v", hd != nil, tc.handled)
			}
			if hd == nil {
				return
			}
			w := httptest.NewRecorder()
			hd.ServeHTTP(w, httptest.NewRequest("GET", "http://"+tc.host+":5002"+ChallengePath+"tok", nil))
			if w.Code != 200 || w.Body.String() != "tok.keyauth" {
				t.Errorf("answered %d %q, want the token", w.Code, w.Body)
			}
		})
	}
	h.Remove(on)
	if h.Handler("a.example.com") != nil {
		t.Error("a removed Manager still answers")
	}
}

// Expiries reads the certificates in storage, in autocert's form (the key,
// then the chain), ECDSA and RSA, and leaves out names not yet issued.
func TestExpiries(t *testing.T) {
	storage := t.TempDir()
	ca, err := mint.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key string
		kt  mint.KeyType
	}{{"a.example.com", mint.ECDSA}, {"a.example.com+rsa", mint.RSA}} {
		pair, err := ca.Issue(t.TempDir(), "a", tc.kt, "a.example.com")
		if err != nil {
			t.Fatal(err)
		}
		key, _ := os.ReadFile(pair.KeyFile)
		cert, _ := os.ReadFile(pair.CertFile)
		os.WriteFile(filepath.Join(storage, tc.key), append(key, cert...), 0o600)
	}
	m := New(Options{Names: []string{"a.example.com", "b.example.com"}, Storage: storage, CA: "https://127.0.0.1:1/dir"})
	es := m.Expiries()
	if len(es) != 2 {
		t.Fatalf("%d expiries, want 2: %+v", len(es), es)
	}
	for i, file := range []string{"a.example.com", "a.example.com+rsa"} {
		if es[i].Name != "a.example.com" || es[i].File != filepath.Join(storage, file) || es[i].NotAfter.Before(time.Now()) {
			t.Errorf("expiry %d: %+v", i, es[i])
		}
	}
}
