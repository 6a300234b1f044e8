package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// browserDir holds the browser test's script and its npm dependency
// (puppeteer-core, which drives Debian's chromium; no browser download).
const browserDir = "testdata/browser"

// needPuppeteer installs the script's dependency from the lock file if it
// is missing (make test-deps does the same), failing the test if it cannot.
func needPuppeteer(t *testing.T) {
	t.Helper()
	need(t, "node", "nodejs")
	npm := need(t, "npm", "npm")
	if _, err := os.Stat(filepath.Join(browserDir, "node_modules", "puppeteer-core")); err == nil {
		return
	}
	cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = browserDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s (run make test-deps): %v\n%s", browserDir, err, out)
	}
}

// TestStatusPageInBrowser loads the status page in headless chromium,
// kills a backend and checks that the page, refreshing itself, shows it
// down within a refresh (2 s) plus the checks' fall x interval. The
// screenshot is saved in the test's output directory (or the temporary
// directory) and its path logged.
func TestStatusPageInBrowser(t *testing.T) {
	chromium := need(t, "chromium", "chromium")
	needPuppeteer(t)
	a, b := startKillable(t, "a"), startKillable(t, "b")
	addr, adminAddr := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`
[admin]
bind = %q
token = "t0ken"
[listeners.t]
bind = %q
pool = "p"
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
`, adminAddr, addr, a.addr, b.addr)
	p := startSluice(t, nil, "-c", writeFile(t, cfg))
	p.waitOutput(t, "admin listening")

	dir := os.Getenv("SLUICE_TEST_OUTPUT")
	if dir == "" {
		dir = os.TempDir()
	}
	shot := filepath.Join(dir, "sluice-status-page.png")
	os.Remove(shot)
	cmd := exec.Command("node", "status_page.mjs", "http://"+adminAddr+"/", "t0ken", b.addr, shot)
	cmd.Dir = browserDir
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		io.Copy(io.Discard, stdout)
	}()
	next := func(within time.Duration) string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the browser script ended early: %v\n%s", <-done, stderr)
			}
			return l
		case <-time.After(within):
			t.Fatalf("no word from the browser within %v; its stderr:\n%s", within, stderr)
		}
		return ""
	}
	if l := next(60 * time.Second); l != "up" {
		t.Fatalf("browser said %q, want up; stderr:\n%s", l, stderr)
	}
	b.kill()
	killed := time.Now()
	fmt.Fprintln(stdin, "killed")
	l := next(30 * time.Second)
	took := time.Since(killed)
	if !strings.HasPrefix(l, "down "+b.addr+" down") {
		t.Fatalf("browser said %q, want the row of %s down", l, b.addr)
	}
	// A refresh (2 s) after the checks' fall x interval + timeout, with
	// room for a slow machine.
	if took > 6*time.Second {
		t.Errorf("the page showed the backend down %v after it was killed", took)
	}
	if fi, err := os.Stat(shot); err != nil || fi.Size() == 0 {
		t.Fatalf("no screenshot: %v", err)
	}
	t.Logf("page showed %s down %v after the kill; screenshot: %s", b.addr, took.Round(time.Millisecond), shot)
}
