package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sluice/internal/admin"
)

// TestCheckWarnsOfAnOpenAdmin: an admin listener on a non-loopback
// address without a token is a warning of check (exit 0), and logged by
// run.
func TestCheckWarnsOfAnOpenAdmin(t *testing.T) {
	file := writeFile(t, `[admin]
bind = "0.0.0.0:9901"
[listeners.a]
bind = "127.0.0.1:7000"
pool = "p"
[pools.p]
[[pools.p.backends]]
address = "127.0.0.1:7101"
`)
	out, code := runSluice(t, "check", "-c", file)
	if code != 0 || !strings.Contains(out, "warning: "+file+":2: admin.bind: 0.0.0.0:9901 is not a loopback address and no token is set") {
		t.Fatalf("check exited %d:\n%s", code, out)
	}
	withToken := strings.Replace(string(mustRead(t, file)), "[listeners.a]", "token = \"x\"\n[listeners.a]", 1)
	if out, code := runSluice(t, "check", "-c", writeFile(t, withToken)); code != 0 || strings.Contains(out, "warning") {
		t.Fatalf("check with a token exited %d:\n%s", code, out)
	}
}

// TestCtlOverUnixSocket drives a sluice through ctl on a Unix socket
// with a token taken from the configuration file, and checks that a
// wrong token is refused.
func TestCtlOverUnixSocket(t *testing.T) {
	a, b := startKillable(t, "a"), startKillable(t, "b")
	sock := filepath.Join(t.TempDir(), "admin.sock")
	addr := freePort(t)
	file := writeFile(t, fmt.Sprintf(`drain_timeout = "100ms"
[admin]
bind = %q
token = "tok"
[listeners.t]
bind = %q
pool = "p"
[pools.p]
[[pools.p.backends]]
address = %q
[[pools.p.backends]]
address = %q
`, sock, addr, a.addr, b.addr))
	p := startSluice(t, nil, "-c", file)
	p.waitOutput(t, "admin listening")
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket %v, %v; want mode 0660", fi, err)
	}
	out, code := runSluice(t, "ctl", "-c", file, "drain", "p", a.addr)
	if code != 0 || out != fmt.Sprintf("pool p backend %s: draining, weight 1, 0 active\n", a.addr) {
		t.Fatalf("ctl drain exited %d:\n%s", code, out)
	}
	out, code = runSluice(t, "ctl", "-c", file, "pools")
	if code != 0 || !regexp.MustCompile(regexp.QuoteMeta(a.addr)+`\s+draining\s+1`).MatchString(out) {
		t.Fatalf("ctl pools exited %d:\n%s", code, out)
	}
	for range 5 {
		if _, _, name := dialLine(t, addr); name != "b" {
			t.Fatalf("a connection reached %s, drained", name)
		}
	}
	out, code = runSluice(t, "ctl", "-a", sock, "-token", "nope", "enable", "p", a.addr)
	if code != 1 || !strings.Contains(out, "401 Unauthorized: admin: missing or wrong token") {
		t.Fatalf("ctl with a wrong token exited %d:\n%s", code, out)
	}
	out, code = runSluice(t, "ctl", "-a", sock, "-token", "tok", "-json", "enable", "p", a.addr)
	if code != 0 || !strings.Contains(out, `"state": "up"`) {
		t.Fatalf("ctl enable exited %d:\n%s", code, out)
	}
	out, code = runSluice(t, "ctl", "-c", file, "metrics")
	if code != 0 || !strings.Contains(out, `sluice_backend_state{backend="`+a.addr+`",pool="p",state="up"} 1`) {
		t.Fatalf("ctl metrics exited %d:\n%s", code, out)
	}
	// The socket goes with sluice.
	p.cmd.Process.Signal(os.Interrupt)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit %d:\n%s", code, p.out)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}
}

// TestAdminEditsBackends changes a running pool through the API and ctl:
// a weight (the round robin follows it exactly), a backend added (checked,
// then picked), a backend removed (no new connections; its live one
// closed after the drain timeout; its checks stopped), and the errors.
func TestAdminEditsBackends(t *testing.T) {
	a, b, c := startKillable(t, "a"), startKillable(t, "b"), startKillable(t, "c")
	addr, adminAddr := freePort(t), freePort(t)
	file := writeFile(t, fmt.Sprintf(`drain_timeout = "300ms"
[admin]
bind = %q
[listeners.t]
bind = %q
pool = "p"
[pools.p]
[pools.p.health]
kind = "tcp"
interval = "100ms"
timeout = "80ms"
rise = 1
[[pools.p.backends]]
address = %q
[[pools.p.backends]]
address = %q
`, adminAddr, addr, a.addr, b.addr))
	p := startSluice(t, nil, "-c", file)
	p.waitOutput(t, "admin listening")
	api := adminClient{t: t, base: "http://" + adminAddr}
	reached := func(n int) map[string]int {
		got := map[string]int{}
		for range n {
			conn, _, name := dialLine(t, addr)
			conn.Close()
			got[name]++
		}
		return got
	}

	// Weight: 1 to 3 gives exactly 10 and 30 of 40 round robin picks.
	out, code := runSluice(t, "ctl", "-c", file, "weight", "p", b.addr, "3")
	if code != 0 || !strings.Contains(out, "weight 3") {
		t.Fatalf("ctl weight exited %d:\n%s", code, out)
	}
	if got := reached(40); got["a"] != 10 || got["b"] != 30 {
		t.Fatalf("after weight 3: %v, want a 10, b 30", got)
	}

	// Add: checked first, then picked.
	code, body := api.do(http.MethodPost, "/api/v1/pools/p/backends", `{"address":"`+c.addr+`"}`, "Content-Type", "application/json")
	if code != http.StatusCreated {
		t.Fatalf("add: %d %s", code, body)
	}
	waitFor(t, 10*time.Second, "the added backend up", func() bool {
		var be admin.BackendJSON
		api.get("/api/v1/pools/p/backends/"+c.addr, &be)
		return be.State == "up" && be.LastCheck != nil && be.LastCheck.Passed
	})
	if got := reached(50); got["c"] != 10 {
		t.Fatalf("after adding c (weight 1 of 5): %v", got)
	}

	// Remove: a live connection to a is closed after the drain timeout.
	var held net.Conn
	for held == nil {
		conn, _, name := dialLine(t, addr)
		if name == "a" {
			held = conn
		} else {
			conn.Close()
		}
	}
	out, code = runSluice(t, "ctl", "-a", adminAddr, "remove", "p", a.addr)
	if code != 0 || !strings.Contains(out, "draining") {
		t.Fatalf("ctl remove exited %d:\n%s", code, out)
	}
	if got := reached(20); got["a"] != 0 {
		t.Fatalf("after removing a: %v", got)
	}
	held.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := held.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("the connection to the removed backend is still open: %v", err)
	}
	var pj admin.PoolJSON
	api.get("/api/v1/pools/p", &pj)
	if len(pj.Backends) != 2 || pj.Backends[0].Address != b.addr || pj.Backends[1].Address != c.addr {
		t.Fatalf("pool after the edits: %+v", pj.Backends)
	}
	waitFor(t, 5*time.Second, "the removed backend's check series gone", func() bool {
		body := api.get("/metrics", nil)
		return !strings.Contains(string(body), `backend="`+a.addr+`",pool="p",result=`) &&
			strings.Contains(string(body), `backend="`+c.addr+`",pool="p",result="pass"`)
	})

	for _, tc := range []struct {
		method, path, body string
		want               int
	}{
		{http.MethodPut, "/api/v1/pools/p/backends/" + b.addr + "/weight", `{"weight":0}`, http.StatusBadRequest},
		{http.MethodPut, "/api/v1/pools/p/backends/" + b.addr + "/weight", `{"weight":257}`, http.StatusBadRequest},
		{http.MethodPut, "/api/v1/pools/p/backends/" + a.addr + "/weight", `{"weight":2}`, http.StatusNotFound},
		{http.MethodPost, "/api/v1/pools/p/backends", `{"address":"` + b.addr + `"}`, http.StatusConflict},
		{http.MethodPost, "/api/v1/pools/p/backends", `{"address":"db:5432"}`, http.StatusBadRequest},
		{http.MethodPost, "/api/v1/pools/nope/backends", `{"address":"10.0.0.1:1"}`, http.StatusNotFound},
		{http.MethodDelete, "/api/v1/pools/p/backends/" + a.addr, ``, http.StatusNotFound},
	} {
		if code, body := api.do(tc.method, tc.path, tc.body, "Content-Type", "application/json"); code != tc.want {
			t.Errorf("%s %s %s: %d %s, want %d", tc.method, tc.path, tc.body, code, body, tc.want)
		}
	}
	if code, _ := api.do(http.MethodDelete, "/api/v1/pools/p/backends/"+b.addr, ""); code != http.StatusOK {
		t.Fatalf("remove b: %d", code)
	}
	if code, body := api.do(http.MethodDelete, "/api/v1/pools/p/backends/"+c.addr, ""); code != http.StatusConflict ||
		!strings.Contains(string(body), "last backend") {
		t.Errorf("remove the last backend: %d %s", code, body)
	}

	// A reload starts again from the file, and says which edits it drops.
	if code, body := api.do(http.MethodPost, "/api/v1/reload", ""); code != http.StatusOK {
		t.Fatalf("reload: %d %s", code, body)
	}
	for _, want := range []string{
		"backend=" + c.addr + " change=added",
		"backend=" + a.addr + " change=removed",
		"backend=" + b.addr + " change=removed",
	} {
		p.waitOutput(t, `msg="reload dropped a change made at run time" pool=p `+want)
	}
	api.get("/api/v1/pools/p", &pj)
	if len(pj.Backends) != 2 || pj.Backends[0].Address != a.addr || pj.Backends[1].Address != b.addr {
		t.Fatalf("pool after the reload: %+v, want the file's a and b", pj.Backends)
	}
}

// TestAdminBindFailureStopsStart: an admin address that cannot be bound
// fails the start, as a listener's does, with nothing left serving.
func TestAdminBindFailureStopsStart(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	addr := freePort(t)
	file := writeFile(t, simpleConfig(addr, echoBackend(t), "1s")+fmt.Sprintf("[admin]\nbind = %q\n", held.Addr()))
	out, code := runSluice(t, "-c", file)
	if code != 1 || !strings.Contains(out, "admin: listen tcp "+held.Addr().String()) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("the listener at %s is still served", addr)
	}
}
