package acmecert

import (
	"crypto/tls"
	"errors"
	"testing"
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
