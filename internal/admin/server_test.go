package admin

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"sluice/internal/pool"
	"sluice/l4"
)

// testServer serves two pools that share their backend addresses (first
// and second: 10.0.0.1:80, 10.0.0.2:80 if not given), each behind a
// listener, and returns it with its metrics and pools.
func testServer(t *testing.T, token string, balance pool.Balance, addrs ...string) (*httptest.Server, *Metrics, []Pool) {
	t.Helper()
	if len(addrs) == 0 {
		addrs = []string{"10.0.0.1:80", "10.0.0.2:80"}
	}
	var bs []pool.BackendOptions
	for _, a := range addrs {
		bs = append(bs, pool.BackendOptions{Addr: netip.MustParseAddrPort(a)})
	}
	var ps []Pool
	for _, name := range []string{"one", "two"} {
		p, err := pool.New(pool.Options{Name: name, Balance: balance, TableSize: 1009, Logger: slog.New(slog.DiscardHandler),
			Backends: bs})
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, Pool{Pool: p, Balance: balance})
	}
	m := NewMetrics(PoolNames{Listener: map[string]string{"l1": "one", "l2": "two"}}, "test")
	s := New(Options{Pools: ps, Metrics: m, Token: token, Logger: slog.New(slog.DiscardHandler),
		Listeners: []Listener{{Name: "l1", Protocol: "tcp", Pool: "one"}, {Name: "l2", Protocol: "tcp", Pool: "two"}}})
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return hs, m, ps
}

func get(t *testing.T, url string, header ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAuth(t *testing.T) {
	hs, _, _ := testServer(t, "tok", pool.RoundRobin)
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"none", "", http.StatusUnauthorized},
		{"bearer", "Bearer tok", http.StatusOK},
		{"bearer lower case", "bearer tok", http.StatusOK},
		{"wrong bearer", "Bearer tok2", http.StatusUnauthorized},
		{"prefix of the token", "Bearer to", http.StatusUnauthorized},
		{"basic", basic("anyone", "tok"), http.StatusOK},
		{"basic wrong", basic("tok", "x"), http.StatusUnauthorized},
		{"basic garbage", "Basic !!!", http.StatusUnauthorized},
		{"other scheme", "Digest tok", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(t, hs.URL+"/api/v1/pools", "Authorization", tc.auth)
			if code != tc.want {
				t.Errorf("%d %s, want %d", code, body, tc.want)
			}
		})
	}
}

// TestEndsPerPool: connections counted on one pool's backend do not show
// on another pool's backend of the same address.
func TestEndsPerPool(t *testing.T) {
	be := echoBackend(t)
	hs, m, ps := testServer(t, "", pool.RoundRobin, be)
	proxyOnce(t, &l4.Server{Name: "l1", Pool: ps[0].Pool, Counters: m.TCPCounters("l1")})
	var pools []PoolJSON
	_, body := get(t, hs.URL+"/api/v1/pools")
	if err := json.Unmarshal([]byte(body), &pools); err != nil {
		t.Fatal(err)
	}
	if got := pools[0].Backends[0].Ended["client_closed"]; got != 1 {
		t.Errorf("pool one: %d ended", got)
	}
	if got := pools[1].Backends[0].Ended; len(got) != 0 {
		t.Errorf("pool two: %v ended", got)
	}
}

// TestLivePerBackend: the API's live count comes from the listeners'
// counters of the backend's pool.
func TestLivePerBackend(t *testing.T) {
	be := echoBackend(t)
	hs, m, ps := testServer(t, "", pool.RoundRobin, be)
	c := proxyHeld(t, &l4.Server{Name: "l1", Pool: ps[0].Pool, Counters: m.TCPCounters("l1")})
	var pools []PoolJSON
	_, body := get(t, hs.URL+"/api/v1/pools")
	if err := json.Unmarshal([]byte(body), &pools); err != nil {
		t.Fatal(err)
	}
	if pools[0].Backends[0].Live != 1 || pools[1].Backends[0].Live != 0 {
		t.Errorf("live %d and %d, want 1 on pool one, 0 on two", pools[0].Backends[0].Live, pools[1].Backends[0].Live)
	}
	c.Close()
}

func TestNoEditor(t *testing.T) {
	hs, _, _ := testServer(t, "", pool.RoundRobin)
	req, _ := http.NewRequest(http.MethodPut, hs.URL+"/api/v1/pools/one/backends/10.0.0.1:80/weight", strings.NewReader(`{"weight":2}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotImplemented {
		t.Errorf("%d, want 501", resp.StatusCode)
	}
}

// TestExplainNotDeterministic: least_conn and random say their answer
// depends on more than the client.
func TestExplainNotDeterministic(t *testing.T) {
	for _, b := range []pool.Balance{pool.LeastConn, pool.Random, pool.RoundRobin} {
		hs, _, _ := testServer(t, "", b)
		var e ExplainJSON
		_, body := get(t, hs.URL+"/api/v1/pools/one/explain?client=10.9.9.9")
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			t.Fatal(err)
		}
		if e.Deterministic || e.Backend == "" || !strings.Contains(e.Why, "not") || e.Client != "10.9.9.9:0" {
			t.Errorf("%v: %+v", b, e)
		}
	}
}
