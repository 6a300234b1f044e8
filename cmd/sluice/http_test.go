package main

import (
	"encoding/xml"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"sluice/config"
	"sluice/internal/dbtest"
)

// startWeb starts a Go net/http backend answering with its name, the
// protocol it was spoken to in, and the forwarding headers it saw.
func startWeb(t *testing.T, name string) netip.AddrPort {
	t.Helper()
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: protocols, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s %s xff=%s id=%s\n", name, r.Proto, r.Method, r.URL.RequestURI(),
			r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Request-Id"))
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// httpConfig is an HTTP listener on addr routing /go to a Go backend and
// /nginx to nginx, and everything else to the Go backend over h2c.
func httpConfig(addr string, goBackend, nginx netip.AddrPort) string {
	return fmt.Sprintf(`[listeners.web]
bind = %q
protocol = "http"
pool = "go_h2c"

[[listeners.web.routes]]
path = "/go"
pool = "go"

[[listeners.web.routes]]
path = "/nginx"
pool = "nginx"

[pools.go]
[[pools.go.backends]]
address = %q

[pools.go_h2c]
h2c = true
[[pools.go_h2c.backends]]
address = %q

[pools.nginx]
[[pools.nginx.backends]]
address = %q
`, addr, goBackend, goBackend, nginx)
}

// curl runs curl with args and returns what it printed.
func curl(t *testing.T, args ...string) string {
	t.Helper()
	bin := need(t, "curl", "curl")
	out, err := exec.Command(bin, append([]string{"-sS", "--max-time", "10"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestHTTPThroughSluiceWithCurl(t *testing.T) {
	goBackend := startWeb(t, "go")
	nginx := dbtest.StartNginx(t)
	addr := freeDualPort(t)
	p := startDBSluice(t, httpConfig(addr, goBackend, nginx.Addr), "web")
	tests := []struct {
		name, path string
		args       []string
		want       string
	}{
		{"http/1.1 to go", "/go/a?b=1", nil, "go HTTP/1.1 GET /go/a?b=1 xff=127.0.0.1 id="},
		{"h2c to go", "/go/a", []string{"--http2-prior-knowledge"}, "go HTTP/1.1 GET /go/a xff=127.0.0.1 id="},
		{"http/1.1 to nginx", "/nginx/x", nil, "nginx GET /nginx/x host=" + addr + " xff=127.0.0.1 id="},
		{"h2c to nginx", "/nginx/y", []string{"--http2-prior-knowledge"}, "nginx GET /nginx/y host=" + addr + " xff=127.0.0.1 id="},
		{"h2c to an h2c pool", "/other", []string{"--http2-prior-knowledge"}, "go HTTP/2.0 GET /other xff=127.0.0.1 id="},
		{"forged xff replaced", "/go/f", []string{"-H", "X-Forwarded-For: 6.6.6.6"}, "go HTTP/1.1 GET /go/f xff=127.0.0.1 id="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := curl(t, append(tt.args, "-i", "http://"+addr+tt.path)...)
			head, body, _ := strings.Cut(out, "\r\n\r\n")
			if !strings.HasPrefix(body, tt.want) {
				t.Errorf("body %q, want it to start %q", body, tt.want)
			}
			id := strings.TrimSpace(body[strings.LastIndex(body, "id=")+3:])
			if !strings.Contains(strings.ToLower(head), "x-request-id: "+id) {
				t.Errorf("request id %q not sent back:\n%s", id, head)
			}
			p.waitOutput(t, "request_id="+id)
		})
	}
	// Keep-alive: curl reuses one connection for two URLs.
	out := curl(t, "-v", "http://"+addr+"/go/1", "http://"+addr+"/nginx/2")
	if !strings.Contains(out, "Re-using existing connection") && !strings.Contains(out, "Reusing existing connection") {
		t.Errorf("curl opened a new connection for the second request:\n%s", out)
	}
}

// TestHTTPCombinedLog: with [log] http_format = "combined", requests are
// logged as Combined Log Format lines, query, user, referer and user agent
// included, and no request record is printed beside them.
func TestHTTPCombinedLog(t *testing.T) {
	addr := freeDualPort(t)
	cfg := "[log]\nhttp_format = \"combined\"\n\n" + httpConfig(addr, startWeb(t, "go"), startWeb(t, "other"))
	p := startDBSluice(t, cfg, "web")
	curl(t, "-u", "bob:pw", "-e", "http://ref/", "-A", "curl-test", "http://"+addr+"/go/a?b=1")
	p.waitOutput(t, `127.0.0.1 - bob [`)
	p.waitOutput(t, `] "GET /go/a?b=1 HTTP/1.1" 200 `)
	p.waitOutput(t, ` "http://ref/" "curl-test"`+"\n")
	if strings.Contains(p.out.String(), "msg=request") {
		t.Errorf("a request record was printed too:\n%s", p.out)
	}
}

// h2specKnownFailures are the h2spec cases sluice fails, each for a
// reason that is not a bug of ours:
//   - 3.5/2 (invalid preface): the listener speaks HTTP/1.1 and h2c on one
//     port, so a connection that does not start with the HTTP/2 preface is
//     read as HTTP/1.1, and answered 400, not closed.
//   - 4.2/3 (HEADERS over SETTINGS_MAX_FRAME_SIZE): an h2spec bug; the
//     frame fits the size Go's server advertises.
//   - 6.5.3/1 (several SETTINGS_INITIAL_WINDOW_SIZE): Go closes the
//     connection on purpose, as hardening.
//   - 8.1.2.2/1 and /2 (connection-specific headers, TE other than
//     trailers): golang/go#26321; Go's server accepts them, and a handler
//     cannot reset a stream with PROTOCOL_ERROR. The reverse proxy drops
//     them as hop-by-hop headers, so none reaches a backend.
var h2specKnownFailures = []string{"3.5/2", "4.2/3", "6.5.3/1", "8.1.2.2/1", "8.1.2.2/2"}

func TestH2spec(t *testing.T) {
	t.Parallel()
	h2spec := needH2spec(t)
	goBackend := startWeb(t, "go")
	addr := freeDualPort(t)
	// nginx is not needed here: every route goes to the Go backend.
	startDBSluice(t, httpConfig(addr, goBackend, goBackend), "web")
	host, port, _ := strings.Cut(addr, ":")
	report := filepath.Join(t.TempDir(), "h2spec.xml")
	// -o 2: the per-case timeout, which the known failures wait out.
	out, _ := exec.Command(h2spec, "-h", host, "-p", port, "-o", "2", "-j", report).CombinedOutput()
	failed, total, err := h2specFailures(report)
	if err != nil {
		t.Fatalf("h2spec report: %v\n%s", err, out)
	}
	if total < 140 {
		t.Fatalf("h2spec ran %d cases, want all 145:\n%s", total, out)
	}
	if !slices.Equal(failed, h2specKnownFailures) {
		t.Errorf("h2spec failed %v, want exactly the known %v:\n%s", failed, h2specKnownFailures, out)
	}
}

// needH2spec returns the path of h2spec, installing it with go install if
// it is missing. Under CI=true a failed install fails the test.
func needH2spec(t *testing.T) string {
	t.Helper()
	gobin := filepath.Join(goEnv(t, "GOPATH"), "bin")
	if p, err := exec.LookPath("h2spec"); err == nil {
		return p
	}
	if p := filepath.Join(gobin, "h2spec"); isExecutable(p) {
		return p
	}
	// The only usable tag (see the field notes); make test-deps runs
	// the same install.
	out, err := exec.Command("go", "install", "github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible").CombinedOutput()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("installing h2spec: %v\n%s", err, out)
		}
		t.Skipf("h2spec is missing and could not be installed (%v): run make test-deps", err)
	}
	return filepath.Join(gobin, "h2spec")
}

func goEnv(t *testing.T, key string) string {
	out, err := exec.Command("go", "env", key).Output()
	if err != nil {
		t.Fatalf("go env %s: %v", key, err)
	}
	return strings.TrimSpace(string(out))
}

// h2specFailures reads h2spec's JUnit report and returns the failed cases
// as "section/number", in report order, and how many cases ran.
func h2specFailures(path string) ([]string, int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	var r struct {
		Suites []struct {
			ID    string `xml:"id,attr"`
			Cases []struct {
				Error   *string `xml:"error"`
				Failure *string `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(data, &r); err != nil {
		return nil, 0, err
	}
	var failed []string
	total := 0
	for _, s := range r.Suites {
		for i, c := range s.Cases {
			total++
			if c.Error != nil || c.Failure != nil {
				failed = append(failed, fmt.Sprintf("%s/%d", s.ID, i+1))
			}
		}
	}
	return failed, total, nil
}

func TestDemoServesHTTPByPath(t *testing.T) {
	p := startSluice(t, nil, "demo")
	p.waitOutput(t, "Press Ctrl-C to stop.")
	for path, want := range map[string]string{
		"/healthz": "ok\n",
		"/api/x":   "hello from demo web backend ",
		"/other":   "hello from demo web backend ",
	} {
		if out := curl(t, "http://127.0.0.1:7080"+path); !strings.HasPrefix(out, want) {
			t.Errorf("%s: %q, want it to start %q", path, out, want)
		}
	}
	if out := curl(t, "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "http://127.0.0.1:7080/old"); out != "301 http://127.0.0.1:7080/api/" {
		t.Errorf("/old: %q, want a 301 to /api/", out)
	}
	p.waitOutput(t, "route=api")
	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("demo exited %d after SIGINT; output:\n%s", code, p.out)
	}
}

// TestFDCapIgnoresHTTPListeners: the fd-derived cap applies to TCP
// listeners only, so a file with HTTP listeners alone has none (and does
// not log one).
func TestFDCapIgnoresHTTPListeners(t *testing.T) {
	cfg, err := config.Parse("t.toml", []byte("[listeners.web]\nbind = \"127.0.0.1:1\"\nprotocol = \"http\"\npool = \"p\"\n"+
		"[pools.p]\n[[pools.p.backends]]\naddress = \"127.0.0.1:2\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	limiter, _, err := fdLimiter(cfg)
	if err != nil || limiter != nil {
		t.Errorf("fdLimiter = %v, %v; want no cap", limiter, err)
	}
}
