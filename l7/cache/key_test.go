package cache

import (
	"net/http"
	"strings"
	"testing"
)

func TestBuildKey(t *testing.T) {
	for _, tc := range []struct {
		name, scheme, host, path, query string
		q                               Query
		params                          []string
		want                            string
	}{
		{"whole query", "http", "Example.COM", "/a", "b=1&a=2", QueryAll, nil, "http://example.com/a?b=1&a=2"},
		{"no query", "http", "example.com", "/a", "b=1", QueryNone, nil, "http://example.com/a"},
		{"listed params sorted", "http", "example.com", "/a", "utm=x&v=2&lang=de", QueryList, []string{"v", "lang"}, "http://example.com/a?lang=de&v=2"},
		{"no listed param", "http", "example.com", "/a", "utm=x", QueryList, []string{"v"}, "http://example.com/a"},
		{"default port", "http", "example.com:80", "/", "", QueryAll, nil, "http://example.com/"},
		{"other port kept", "https", "example.com:8443", "", "", QueryAll, nil, "https://example.com:8443/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := buildKey(tc.scheme, tc.host, tc.path, tc.query, tc.q, tc.params); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSecondaryKey(t *testing.T) {
	names, star := varyNames(http.Header{"Vary": {"Accept-Encoding, accept-language", "Accept-Encoding"}})
	if star || strings.Join(names, ",") != "accept-encoding,accept-language" {
		t.Fatalf("vary names %q %v", names, star)
	}
	a := secondaryKey(names, http.Header{"Accept-Encoding": {"gzip,  br"}})
	b := secondaryKey(names, http.Header{"Accept-Encoding": {"gzip", "br"}})
	if a != b {
		t.Errorf("normalised values differ: %q %q", a, b)
	}
	if secondaryKey(names, http.Header{}) == secondaryKey(names, http.Header{"Accept-Language": {""}}) {
		t.Error("a missing field keys as an empty one")
	}
	if _, star := varyNames(http.Header{"Vary": {"Foo, *"}}); !star {
		t.Error("Vary: * not seen")
	}
}

// FuzzKey builds keys from request parts anyone sends, and purge URLs: no
// panic, the scheme and host lead, and a QueryList key keeps only listed
// parameters.
func FuzzKey(f *testing.F) {
	f.Add("example.com", "/a/b", "x=1&v=2&v=1", "http://example.com/a?v=1")
	f.Add("[::1]:80", "", "%zz=1&v", "://")
	f.Fuzz(func(t *testing.T, host, path, query, purge string) {
		for _, q := range []Query{QueryAll, QueryNone, QueryList} {
			k := buildKey("http", host, path, query, q, []string{"v"})
			if !strings.HasPrefix(k, "http://"+strings.ToLower(strings.TrimSuffix(host, ":80"))) {
				t.Fatalf("key %q does not start with the host %q", k, host)
			}
			if q == QueryNone && strings.Count(k, "?") > strings.Count(host+path, "?") {
				t.Fatalf("QueryNone kept a query: %q", k)
			}
			if q == QueryList {
				if _, kept, ok := strings.Cut(strings.TrimPrefix(k, "http://"+strings.ToLower(strings.TrimSuffix(host, ":80"))+path), "?"); ok && kept != "" {
					for _, pair := range strings.Split(kept, "&") {
						if n, _, _ := strings.Cut(pair, "="); n != "v" {
							t.Fatalf("QueryList kept %q in %q", pair, k)
						}
					}
				}
			}
		}
		normalURL(purge, QueryList, []string{"v"})
	})
}
