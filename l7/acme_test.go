package l7

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"sluice/internal/pool"
	"sluice/l7/route"
)

// challenges answers validations for its hosts with a fixed token.
type challenges map[string]string

func (c challenges) Handler(host string) http.Handler {
	tok, ok := c[host]
	if !ok {
		return nil
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, tok) })
}

// TestACMEChallengeBeforeRoutes: an HTTP-01 validation for a name ACME
// has is answered before the routes, on the fast path's listener and on
// net/http's; other names' validations and other paths go to the routes.
func TestACMEChallengeBeforeRoutes(t *testing.T) {
	web := startBackend(t, named("web"))
	for _, netHTTP := range []bool{false, true} {
		name := "fast path"
		if netHTTP {
			name = "net/http"
		}
		t.Run(name, func(t *testing.T) {
			px := startProxy(t, &Server{
				Routes: []route.Route{
					{Name: "https", Match: route.Match{Host: "plain.example.com"}, Kind: route.Redirect, HTTPS: true, Status: 301},
					{Name: "all", Pool: "web"},
				},
				Upstreams:   map[string]Upstream{"web": {Pool: newPool(t, pool.Options{Name: "web"}, web.addr)}},
				ACME:        challenges{"acme.example.com": "tok.key", "plain.example.com": "tok2.key"},
				NetHTTPOnly: netHTTP,
			})
			c := client(t)
			for _, tc := range []struct {
				name, host, path string
				status           int
				body, end, route string
			}{
				{"its name", "acme.example.com", "/.well-known/acme-challenge/tok", 200, "tok.key", "responded", "acme"},
				{"its name with a port", "ACME.example.com:5002", "/.well-known/acme-challenge/tok", 200, "tok.key", "responded", "acme"},
				{"before a redirect route", "plain.example.com", "/.well-known/acme-challenge/tok2", 200, "tok2.key", "responded", "acme"},
				{"another name", "other.example.com", "/.well-known/acme-challenge/tok", 200, "web GET /.well-known/acme-challenge/tok", "ok", "all"},
				{"another path", "acme.example.com", "/x", 200, "web GET /x", "ok", "all"},
			} {
				resp, body := get(t, c, "GET", px.url+tc.path, map[string]string{"Host": tc.host})
				if resp.StatusCode != tc.status || !strings.HasPrefix(body, tc.body) {
					t.Errorf("%s: %d %q, want %d %q", tc.name, resp.StatusCode, body, tc.status, tc.body)
				}
				id := resp.Header.Get("X-Request-Id")
				rec := px.log.waitRequest(t, tc.name, func(r map[string]any) bool { return r["request_id"] == id || (id == "" && r["host"] == tc.host) })
				if rec["end"] != tc.end || rec["route"] != tc.route {
					t.Errorf("%s: logged %v, want end=%s route=%s", tc.name, rec, tc.end, tc.route)
				}
			}
		})
	}
}
