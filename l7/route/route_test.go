package route

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestMatches(t *testing.T) {
	hdr := http.Header{"X-Canary": {"1"}, "X-Other": {""}}
	req := func(host, path, method string) *Request {
		return &Request{Host: host, Path: path, Method: method, Header: hdr, Client: netip.MustParseAddr("10.1.2.3")}
	}
	tests := []struct {
		name string
		m    Match
		r    *Request
		want bool
	}{
		{"zero matches all", Match{}, req("a", "/", "GET"), true},
		{"exact host", Match{Host: "example.com"}, req("example.com", "/", "GET"), true},
		{"exact host other", Match{Host: "example.com"}, req("www.example.com", "/", "GET"), false},
		{"wildcard one label", Match{Host: "*.example.com"}, req("www.example.com", "/", "GET"), true},
		{"wildcard two labels", Match{Host: "*.example.com"}, req("a.b.example.com", "/", "GET"), true},
		{"wildcard not apex", Match{Host: "*.example.com"}, req("example.com", "/", "GET"), false},
		{"wildcard not suffix word", Match{Host: "*.example.com"}, req("badexample.com", "/", "GET"), false},
		{"prefix itself", Match{Path: "/api"}, req("a", "/api", "GET"), true},
		{"prefix below", Match{Path: "/api"}, req("a", "/api/v1", "GET"), true},
		{"prefix not mid-segment", Match{Path: "/api"}, req("a", "/apix", "GET"), false},
		{"slash prefix below", Match{Path: "/api/"}, req("a", "/api/x", "GET"), true},
		{"slash prefix not bare", Match{Path: "/api/"}, req("a", "/api", "GET"), false},
		{"root prefix", Match{Path: "/"}, req("a", "/anything", "GET"), true},
		{"exact path", Match{Path: "/health", PathExact: true}, req("a", "/health", "GET"), true},
		{"exact path below", Match{Path: "/health", PathExact: true}, req("a", "/health/x", "GET"), false},
		{"method in", Match{Methods: []string{"GET", "HEAD"}}, req("a", "/", "HEAD"), true},
		{"method out", Match{Methods: []string{"GET", "HEAD"}}, req("a", "/", "POST"), false},
		{"method case-sensitive", Match{Methods: []string{"GET"}}, req("a", "/", "get"), false},
		{"header present", Match{Header: "X-Other"}, req("a", "/", "GET"), true},
		{"header absent", Match{Header: "X-Missing"}, req("a", "/", "GET"), false},
		{"header value", Match{Header: "X-Canary", HeaderValue: "1"}, req("a", "/", "GET"), true},
		{"header other value", Match{Header: "X-Canary", HeaderValue: "2"}, req("a", "/", "GET"), false},
		{"header nil getter", Match{Header: "X-Canary"}, &Request{}, false},
		{"client in", Match{Clients: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, req("a", "/", "GET"), true},
		{"client out", Match{Clients: []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16")}}, req("a", "/", "GET"), false},
		{"client v4-mapped", Match{Clients: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
			&Request{Client: netip.MustParseAddr("::ffff:10.0.0.1")}, true},
		{"all conditions", Match{Host: "*.example.com", Path: "/api", Methods: []string{"GET"}, Header: "X-Canary",
			Clients: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, req("x.example.com", "/api/1", "GET"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.m.Matches(tt.r); got != tt.want {
				t.Errorf("Matches = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCovers(t *testing.T) {
	p := netip.MustParsePrefix
	tests := []struct {
		name string
		m, o Match
		want bool
	}{
		{"catch-all covers all", Match{}, Match{Host: "a", Path: "/x"}, true},
		{"root prefix covers catch-all", Match{Path: "/"}, Match{}, true},
		{"nothing narrower covers catch-all", Match{Path: "/a"}, Match{}, false},
		{"root prefix covers paths", Match{Path: "/"}, Match{Path: "/x", PathExact: true}, true},
		{"prefix covers longer prefix", Match{Path: "/api"}, Match{Path: "/api/v1"}, true},
		{"prefix not mid-segment", Match{Path: "/api"}, Match{Path: "/apix"}, false},
		{"longer prefix not shorter", Match{Path: "/api/v1"}, Match{Path: "/api"}, false},
		{"exact covers same exact", Match{Path: "/a", PathExact: true}, Match{Path: "/a", PathExact: true}, true},
		{"exact not prefix", Match{Path: "/a", PathExact: true}, Match{Path: "/a"}, false},
		{"wildcard covers host", Match{Host: "*.example.com"}, Match{Host: "a.example.com"}, true},
		{"wildcard covers deeper wildcard", Match{Host: "*.example.com"}, Match{Host: "*.a.example.com"}, true},
		{"wildcard not apex", Match{Host: "*.example.com"}, Match{Host: "example.com"}, false},
		{"host not other host", Match{Host: "a"}, Match{Host: "b"}, false},
		{"methods superset", Match{Methods: []string{"GET", "HEAD"}}, Match{Methods: []string{"GET"}}, true},
		{"methods not superset", Match{Methods: []string{"GET"}}, Match{Methods: []string{"GET", "POST"}}, false},
		{"header presence covers value", Match{Header: "X"}, Match{Header: "X", HeaderValue: "1"}, true},
		{"header value not presence", Match{Header: "X", HeaderValue: "1"}, Match{Header: "X"}, false},
		{"header other name", Match{Header: "X"}, Match{Header: "Y"}, false},
		{"cidr covers narrower", Match{Clients: []netip.Prefix{p("10.0.0.0/8")}}, Match{Clients: []netip.Prefix{p("10.1.0.0/16")}}, true},
		{"cidr not wider", Match{Clients: []netip.Prefix{p("10.1.0.0/16")}}, Match{Clients: []netip.Prefix{p("10.0.0.0/8")}}, false},
		{"different conditions", Match{Host: "a"}, Match{Path: "/x"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.m.Covers(&tt.o); got != tt.want {
				t.Errorf("Covers = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCanonicalHost(t *testing.T) {
	for in, want := range map[string]string{
		"Example.COM":      "example.com",
		"example.com:8080": "example.com",
		"example.com.":     "example.com",
		"[::1]:80":         "::1",
		"[::1]":            "::1",
		"10.0.0.1:80":      "10.0.0.1",
		"":                 "",
	} {
		if got := CanonicalHost(in); got != want {
			t.Errorf("CanonicalHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFindFirstMatchWins(t *testing.T) {
	tbl := NewTable([]Route{
		{Name: "health", Match: Match{Path: "/health", PathExact: true}, Kind: Respond, Status: 200},
		{Name: "api", Match: Match{Path: "/api"}, Pool: "api"},
		{Name: "all", Pool: "web"},
	})
	for path, want := range map[string]string{"/health": "health", "/api/x": "api", "/healthz": "all"} {
		if r := tbl.Find(&Request{Path: path}); r == nil || r.Name != want {
			t.Errorf("Find(%s) = %v, want %s", path, r, want)
		}
	}
	if r := NewTable(nil).Find(&Request{Path: "/"}); r != nil {
		t.Errorf("empty table found %v", r)
	}
}

func TestCheck(t *testing.T) {
	p := netip.MustParsePrefix
	r := Route{AllowMethods: []string{"GET"}, Allow: []netip.Prefix{p("10.0.0.0/8")}, Deny: []netip.Prefix{p("10.9.0.0/16")}}
	for _, tt := range []struct {
		client, method string
		want           Verdict
	}{
		{"10.1.1.1", "GET", Pass},
		{"10.9.1.1", "GET", DenyClient},
		{"192.0.2.1", "GET", DenyClient},
		{"10.1.1.1", "POST", DenyMethod},
	} {
		if got := r.Check(&Request{Client: netip.MustParseAddr(tt.client), Method: tt.method}); got != tt.want {
			t.Errorf("Check(%s %s) = %v, want %v", tt.client, tt.method, got, tt.want)
		}
	}
}

func TestRedirectTo(t *testing.T) {
	up := Route{Kind: Redirect, HTTPS: true}
	if got := up.RedirectTo("example.com:8080", "/a?b=1"); got != "https://example.com/a?b=1" {
		t.Errorf("https upgrade = %q", got)
	}
	if got := up.RedirectTo("[::1]:80", "/"); got != "https://[::1]/" {
		t.Errorf("https upgrade v6 = %q", got)
	}
	to := Route{Kind: Redirect, Location: "https://new.example/"}
	if got := to.RedirectTo("x", "/y"); got != "https://new.example/" {
		t.Errorf("fixed target = %q", got)
	}
}

func TestRewritePath(t *testing.T) {
	for _, tt := range []struct {
		strip, add, in, want string
	}{
		{"", "", "/a/b", "/a/b"},
		{"/api", "", "/api/v1", "/v1"},
		{"/api/", "", "/api/v1", "/v1"},
		{"/api", "", "/api", "/"},
		{"", "/v2", "/x", "/v2/x"},
		{"/api", "/v2/", "/api/x", "/v2/x"},
		{"/api", "/", "/api/x", "/x"},
	} {
		rw := Rewrite{StripPrefix: tt.strip, AddPrefix: tt.add}
		if got := rw.Path(tt.in); got != tt.want {
			t.Errorf("strip %q add %q: Path(%q) = %q, want %q", tt.strip, tt.add, tt.in, got, tt.want)
		}
	}
}
