package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/internal/admin"
)

// adminClient makes requests to a sluice's admin listener in a test.
type adminClient struct {
	t     *testing.T
	base  string
	token string
}

// do makes a request with the token (unless noToken) and returns the
// status and body.
func (a adminClient) do(method, path, body string, header ...string) (int, []byte) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.base+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// get fetches path, wants 200 and decodes its JSON into v (if not nil).
func (a adminClient) get(path string, v any) []byte {
	a.t.Helper()
	code, b := a.do(http.MethodGet, path, "")
	if code != http.StatusOK {
		a.t.Fatalf("GET %s: %d %s", path, code, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			a.t.Fatalf("GET %s: %v in %s", path, err, b)
		}
	}
	return b
}

// metric returns the sum of the samples of name whose labels include
// every one of labels (`listener="t"`), from the text format.
func metric(body []byte, name string, labels ...string) float64 {
	var total float64
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			total += f
		}
	}
	return total
}

// TestAdminAPI runs sluice with an [admin] table and a token, and checks
// every endpoint with real HTTP requests: the token, /metrics (promtool
// clean, and its counts equal to the log's), the JSON API, a drain set
// through it, a backend going down, the status page.
func TestAdminAPI(t *testing.T) {
	promtool := need(t, "promtool", "prometheus")
	a, b, c := startKillable(t, "a"), startKillable(t, "b"), startKillable(t, "c")
	udpBackend := udpEcho(t)
	addr, udpAddr, adminAddr := freePort(t), freeUDPPort(t), freePort(t)
	cfg := fmt.Sprintf(`
[admin]
bind = %q
token = "s3cret"
[listeners.t]
bind = %q
pool = "p"
[listeners.u]
bind = %q
protocol = "udp"
pool = "q"
session_timeout = "200ms"
[pools.p]
[pools.p.health]
kind = "tcp"
interval = "100ms"
timeout = "80ms"
rise = 1
fall = 2
[[pools.p.backends]]
address = %q
[[pools.p.backends]]
address = %q
weight = 2
[[pools.p.backends]]
address = %q
[pools.q]
[[pools.q.backends]]
address = %q
`, adminAddr, addr, udpAddr, a.addr, b.addr, c.addr, udpBackend)
	p := startSluice(t, nil, "-c", writeFile(t, cfg))
	p.waitOutput(t, "admin listening")
	api := adminClient{t: t, base: "http://" + adminAddr, token: "s3cret"}

	t.Run("token", func(t *testing.T) {
		for _, path := range []string{"/", "/status.js", "/metrics", "/api/v1/status", "/api/v1/pools", "/api/v1/listeners",
			"/api/v1/pools/p", "/api/v1/pools/p/explain?client=10.0.0.1:1"} {
			for _, tok := range []string{"", "wrong"} {
				code, _ := adminClient{t: t, base: api.base, token: tok}.do(http.MethodGet, path, "")
				if code != http.StatusUnauthorized {
					t.Errorf("GET %s with token %q: %d, want 401", path, tok, code)
				}
			}
		}
		backend := "/api/v1/pools/p/backends/" + a.addr
		for _, req := range []struct{ method, path, body string }{
			{http.MethodPut, backend + "/state", `{"state":"drain"}`},
			{http.MethodPut, backend + "/weight", `{"weight":2}`},
			{http.MethodPost, "/api/v1/pools/p/backends", `{"address":"127.0.0.1:9"}`},
			{http.MethodDelete, backend, ""},
		} {
			code, _ := adminClient{t: t, base: api.base}.do(req.method, req.path, req.body, "Content-Type", "application/json")
			if code != http.StatusUnauthorized {
				t.Errorf("%s %s without token: %d", req.method, req.path, code)
			}
		}
		// A browser sends the token as basic authentication's password.
		code, _ := adminClient{t: t, base: api.base}.do(http.MethodGet, "/api/v1/status", "",
			"Authorization", "Basic "+basic("anyone", "s3cret"))
		if code != http.StatusOK {
			t.Errorf("basic auth: %d", code)
		}
	})

	// Load: 6 clients at once, each making connections that exchange a
	// line, while /metrics is scraped; then UDP datagrams.
	const clients, each = 6, 15
	const conns = clients * each
	errs := make(chan error, clients)
	stopScraping := make(chan struct{})
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() { errs <- exchangeLines(addr, each) })
	}
	var scraper sync.WaitGroup
	scraper.Go(func() {
		for {
			select {
			case <-stopScraping:
				return
			case <-time.After(20 * time.Millisecond):
				api.do(http.MethodGet, "/metrics", "")
			}
		}
	})
	wg.Wait()
	close(stopScraping)
	scraper.Wait()
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	uc, err := net.Dial("udp", udpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	const datagrams = 5
	buf := make([]byte, 100)
	for range datagrams {
		uc.Write([]byte("hello"))
		uc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := uc.Read(buf); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("metrics match the log", func(t *testing.T) {
		var body []byte
		waitFor(t, 10*time.Second, "every connection and the UDP session counted", func() bool {
			body = api.get("/metrics", nil)
			return metric(body, "sluice_tcp_connections_total", `listener="t"`) == conns &&
				metric(body, "sluice_udp_sessions_total", `listener="u"`) == 1
		})
		lines := logLines(p.out.String(), "connection")
		if len(lines) != conns {
			t.Fatalf("%d connection lines, want %d", len(lines), conns)
		}
		byEnd, byBackend := map[string]int{}, map[string]int{}
		var in, out int
		for _, l := range lines {
			byEnd[l["end"]]++
			byBackend[l["backend"]]++
			n, _ := strconv.Atoi(l["bytes_in"])
			m, _ := strconv.Atoi(l["bytes_out"])
			in, out = in+n, out+m
		}
		for end, n := range byEnd {
			if got := metric(body, "sluice_tcp_connections_total", `end="`+end+`"`); got != float64(n) {
				t.Errorf("end=%s: metric %v, log lines %d", end, got, n)
			}
		}
		for be, n := range byBackend {
			if got := metric(body, "sluice_tcp_connections_total", `backend="`+be+`"`, `pool="p"`); got != float64(n) {
				t.Errorf("backend=%s: metric %v, log lines %d", be, got, n)
			}
		}
		if got := metric(body, "sluice_tcp_received_bytes_total", `listener="t"`); got != float64(in) || in != 5*conns {
			t.Errorf("received bytes: metric %v, log %d, sent %d", got, in, 5*conns)
		}
		if got := metric(body, "sluice_tcp_sent_bytes_total", `listener="t"`); got != float64(out) {
			t.Errorf("sent bytes: metric %v, log %d", got, out)
		}
		if got := metric(body, "sluice_tcp_connection_duration_seconds_count", `listener="t"`); got != conns {
			t.Errorf("duration histogram count %v", got)
		}
		if got := metric(body, "sluice_udp_datagrams_total", `direction="from_clients"`); got != datagrams {
			t.Errorf("udp datagrams from clients %v, want %d", got, datagrams)
		}
		if got := metric(body, "sluice_udp_received_bytes_total", `listener="u"`); got != 5*datagrams {
			t.Errorf("udp bytes %v", got)
		}
		if got := metric(body, "sluice_health_checks_total", `backend="`+a.addr+`"`, `result="pass"`); got < 1 {
			t.Errorf("no passing health check of %s counted", a.addr)
		}
		if got := metric(body, "sluice_backend_state", `backend="`+b.addr+`"`, `state="up"`); got != 1 {
			t.Errorf("state of b: %v", got)
		}
		if got := metric(body, "sluice_build_info"); got != 1 {
			t.Errorf("build info %v", got)
		}
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	})

	t.Run("listeners and pools", func(t *testing.T) {
		var st admin.StatusJSON
		api.get("/api/v1/status", &st)
		if len(st.Listeners) != 2 || len(st.Pools) != 2 {
			t.Fatalf("status: %+v", st)
		}
		var ls []admin.ListenerJSON
		api.get("/api/v1/listeners", &ls)
		for _, l := range ls {
			switch l.Name {
			case "t":
				if l.Protocol != "tcp" || l.Bind != addr || l.Pool != "p" || l.Ended["client_closed"] != conns || l.ReceivedBytes != 5*conns {
					t.Errorf("listener t: %+v", l)
				}
			case "u":
				if l.Protocol != "udp" || l.Sessions == nil || l.Datagrams["to_clients"] != datagrams {
					t.Errorf("listener u: %+v", l)
				}
			}
		}
		var pj admin.PoolJSON
		api.get("/api/v1/pools/p", &pj)
		if pj.Balance != "round_robin" || len(pj.Backends) != 3 || pj.Backends[1].Weight != 2 {
			t.Fatalf("pool p: %+v", pj)
		}
		for _, be := range pj.Backends {
			if be.State != "up" || be.LastCheck == nil || !be.LastCheck.Passed || be.LastCheck.At.IsZero() {
				t.Errorf("backend %+v", be)
			}
		}
		var be admin.BackendJSON
		api.get("/api/v1/pools/p/backends/"+b.addr, &be)
		if be.Address != b.addr || be.Weight != 2 {
			t.Errorf("backend b: %+v", be)
		}
		for path, want := range map[string]int{
			"/api/v1/pools/nope":                        http.StatusNotFound,
			"/api/v1/pools/p/backends/10.9.9.9:1":       http.StatusNotFound,
			"/api/v1/pools/p/explain?client=bad":        http.StatusBadRequest,
			"/api/v1/pools/nope/explain?client=1.2.3.4": http.StatusNotFound,
		} {
			if code, body := api.do(http.MethodGet, path, ""); code != want {
				t.Errorf("GET %s: %d %s, want %d", path, code, body, want)
			}
		}
	})

	t.Run("drain through the API", func(t *testing.T) {
		path := "/api/v1/pools/p/backends/" + a.addr + "/state"
		if code, _ := api.do(http.MethodPut, path, `{"state":"drain"}`); code != http.StatusUnsupportedMediaType {
			t.Errorf("PUT without a JSON content type: %d", code)
		}
		if code, body := api.do(http.MethodPut, path, `{"state":"off"}`, "Content-Type", "application/json"); code != http.StatusBadRequest ||
			!strings.Contains(string(body), "want enabled, drain or maintenance") {
			t.Errorf("PUT bad state: %d %s", code, body)
		}
		code, body := api.do(http.MethodPut, path, `{"state":"drain"}`, "Content-Type", "application/json")
		var be admin.BackendJSON
		if code != http.StatusOK || json.Unmarshal(body, &be) != nil || be.State != "draining" {
			t.Fatalf("PUT drain: %d %s", code, body)
		}
		for range 20 {
			_, _, name := dialLine(t, addr)
			if name == "a" {
				t.Fatal("a new connection reached the draining backend")
			}
		}
		if got := metric(api.get("/metrics", nil), "sluice_backend_state", `backend="`+a.addr+`"`, `state="draining"`); got != 1 {
			t.Errorf("draining gauge %v", got)
		}
		code, body = api.do(http.MethodPut, path, `{"state":"enabled"}`, "Content-Type", "application/json")
		if code != http.StatusOK || !strings.Contains(string(body), `"state": "up"`) {
			t.Fatalf("PUT enabled: %d %s", code, body)
		}
	})

	t.Run("a backend going down", func(t *testing.T) {
		c.kill()
		waitFor(t, 10*time.Second, "c shown down with its failed check", func() bool {
			var be admin.BackendJSON
			api.get("/api/v1/pools/p/backends/"+c.addr, &be)
			return be.State == "down" && be.LastCheck != nil && !be.LastCheck.Passed && strings.Contains(be.LastCheck.Error, "refused")
		})
		if got := metric(api.get("/metrics", nil), "sluice_health_checks_total", `backend="`+c.addr+`"`, `result="fail"`); got < 2 {
			t.Errorf("failed checks of c: %v", got)
		}
		var e admin.ExplainJSON
		api.get("/api/v1/pools/p/explain?client=10.1.2.3:4567", &e)
		if len(e.Candidates) != 2 || len(e.Excluded) != 1 || e.Excluded[0].Address != c.addr ||
			!strings.Contains(e.Excluded[0].Why, "last check failed") || e.Deterministic {
			t.Errorf("explain: %+v", e)
		}
	})

	t.Run("status page", func(t *testing.T) {
		code, body := api.do(http.MethodGet, "/", "")
		if code != http.StatusOK || !strings.Contains(string(body), `<script src="status.js">`) {
			t.Errorf("GET /: %d %s", code, body)
		}
		code, body = api.do(http.MethodGet, "/status.js", "")
		if code != http.StatusOK || !strings.Contains(string(body), "api/v1/status") {
			t.Errorf("GET /status.js: %d", code)
		}
		if code, _ := api.do(http.MethodGet, "/nothing", ""); code != http.StatusNotFound {
			t.Errorf("GET /nothing: %d", code)
		}
	})
}

// exchangeLines makes n connections to addr, one after the other, each reading
// the greeting and echoing one line.
func exchangeLines(addr string, n int) error {
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		_, err = r.ReadString('\n')
		if err == nil {
			_, err = io.WriteString(c, "ping\n")
		}
		if err == nil {
			_, err = r.ReadString('\n')
		}
		c.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// basic returns the credentials of HTTP basic authentication.
func basic(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}

// logLines returns the key=value fields of the log lines with message msg.
func logLines(out, msg string) []map[string]string {
	var lines []map[string]string
	field := regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S*)`)
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if !strings.Contains(sc.Text(), " msg="+msg+" ") {
			continue
		}
		m := map[string]string{}
		for _, f := range field.FindAllStringSubmatch(sc.Text(), -1) {
			m[f[1]] = strings.Trim(f[2], `"`)
		}
		lines = append(lines, m)
	}
	return lines
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAdminHTTPMetrics sends requests through an HTTP listener and checks
// that the request counters equal the request log lines, by route, pool,
// backend and status, and that the pools' backends show them ended.
func TestAdminHTTPMetrics(t *testing.T) {
	backend := func(name string) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, name)
		})}
		done := make(chan struct{})
		go func() { defer close(done); srv.Serve(ln) }()
		t.Cleanup(func() { srv.Close(); <-done })
		return ln.Addr().String()
	}
	a, b := backend("a"), backend("b")
	addr, adminAddr := freePort(t), freePort(t)
	p := startSluice(t, nil, "-c", writeFile(t, fmt.Sprintf(`
[admin]
bind = %q
[listeners.web]
bind = %q
protocol = "http"
pool = "q"
[[listeners.web.routes]]
name = "api"
path = "/api"
pool = "p"
[pools.p]
[[pools.p.backends]]
address = %q
[pools.q]
[[pools.q.backends]]
address = %q
`, adminAddr, addr, a, b)))
	p.waitOutput(t, "admin listening")
	api := adminClient{t: t, base: "http://" + adminAddr}
	const toAPI, toDefault = 7, 4
	for i := range toAPI + toDefault {
		path := "/api/x"
		if i >= toAPI {
			path = "/other"
		}
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	var body []byte
	waitFor(t, 10*time.Second, "every request counted", func() bool {
		body = api.get("/metrics", nil)
		return metric(body, "sluice_http_requests_total", `listener="web"`) == toAPI+toDefault
	})
	lines := logLines(p.out.String(), "request")
	if len(lines) != toAPI+toDefault {
		t.Fatalf("%d request lines, want %d", len(lines), toAPI+toDefault)
	}
	for _, want := range []string{
		fmt.Sprintf(`sluice_http_requests_total{backend=%q,code="200",end=%q,listener="web",pool="p",route="api"} %d`, a, lines[0]["end"], toAPI),
		fmt.Sprintf(`sluice_http_requests_total{backend=%q,code="200",end=%q,listener="web",pool="q",route="default"} %d`, b, lines[0]["end"], toDefault),
		fmt.Sprintf(`sluice_http_sent_bytes_total{backend=%q,listener="web",pool="p",route="api"} %d`, a, toAPI),
		fmt.Sprintf(`sluice_http_request_duration_seconds_count{listener="web"} %d`, toAPI+toDefault),
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("no %s in:\n%s", want, body)
		}
	}
	var pj admin.PoolJSON
	api.get("/api/v1/pools/p", &pj)
	if got := pj.Backends[0].Ended; got[lines[0]["end"]] != toAPI {
		t.Errorf("pool p's backend ended %v, want %d", got, toAPI)
	}
	var ls []admin.ListenerJSON
	api.get("/api/v1/listeners", &ls)
	if len(ls) != 1 || ls[0].Protocol != "http" || ls[0].Ended[lines[0]["end"]] != toAPI+toDefault {
		t.Errorf("listeners %+v", ls)
	}
}
