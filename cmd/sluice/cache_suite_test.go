package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cacheSuiteDir holds the HTTP caching test suite's npm lock file and the
// scripts that start its origin and count its results.
const cacheSuiteDir = "testdata/cache-suite"

// The suite's version and what sluice scores on it: the test fails if a
// change adds required failures or loses required passes. Every failure
// left is listed, with its reason, in README's caching section.
const (
	cacheSuiteVersion   = "0.4.5" // 355 tests, 5 of them for browsers only
	cacheSuiteMaxFails  = 1
	cacheSuiteMinPasses = 159
)

// needCacheSuite installs the suite from the lock file if it is missing
// (make test-deps does the same), failing the test if it cannot.
func needCacheSuite(t *testing.T) string {
	t.Helper()
	node := need(t, "node", "nodejs")
	npm := need(t, "npm", "npm")
	if _, err := os.Stat(filepath.Join(cacheSuiteDir, "node_modules", "http-cache-tests")); err == nil {
		return node
	}
	cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = cacheSuiteDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s (run make test-deps): %v\n%s", cacheSuiteDir, err, out)
	}
	return node
}

// suiteCounts is what count.mjs prints.
type suiteCounts struct {
	Counts   map[string]int `json:"counts"`
	Failures []struct {
		ID     string `json:"id"`
		Name   string `json:"name"`
		Result any    `json:"result"`
	} `json:"failures"`
}

// TestCacheSuite runs the HTTP caching test suite (npm http-cache-tests)
// against a cache route of sluice in front of the suite's own origin, and
// counts its required tests as the suite's result pages do.
func TestCacheSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("the suite takes about a minute")
	}
	node := needCacheSuite(t)
	originPort := freeLoopbackPort(t)
	origin := exec.Command(node, "origin.mjs")
	origin.Dir = cacheSuiteDir
	originOut := &lockedBuffer{}
	origin.Stdout, origin.Stderr = originOut, originOut
	origin.Env = append(os.Environ(), "npm_config_protocol=http", "npm_config_port="+originPort,
		"npm_config_pidfile="+filepath.Join(t.TempDir(), "origin.pid"))
	if err := origin.Start(); err != nil {
		t.Fatal(err)
	}
	originDone := make(chan error, 1)
	go func() { originDone <- origin.Wait() }()
	t.Cleanup(func() {
		origin.Process.Kill()
		<-originDone
	})
	eventually(t, 20*time.Second, "the suite's origin to start", func() bool {
		return strings.Contains(originOut.String(), "Listening on")
	})

	addr := freePort(t)
	// The origin disconnects on purpose in some tests: passive checks
	// would eject it. Node closes idle connections after 5 s, so
	// sluice's idle connections to it must close sooner.
	cfg := fmt.Sprintf(`
[pools.origin]
passive_failures = 0
[[pools.origin.backends]]
address = "127.0.0.1:%s"
[caches.suite]
max_size = "64MiB"
[listeners.web]
bind = %q
protocol = "http"
backend_idle_timeout = "2s"
[[listeners.web.routes]]
pool = "origin"
cache = "suite"
`, originPort, addr)
	p := startSluice(t, nil, "-c", writeFile(t, cfg))
	p.waitOutput(t, "listening")

	cli := exec.Command(node, "--no-warnings", filepath.Join("node_modules", "http-cache-tests", "cli.mjs"))
	cli.Dir = cacheSuiteDir
	cli.Env = append(os.Environ(), "npm_config_base=http://"+addr, "npm_config_id=", "npm_package_config_id=")
	var stderr bytes.Buffer
	cli.Stderr = &stderr
	results, err := cli.Output()
	if err != nil || len(results) == 0 {
		t.Fatalf("the suite's cli: %v\n%s", err, stderr.String())
	}
	count := exec.Command(node, "count.mjs")
	count.Dir = cacheSuiteDir
	count.Stdin = bytes.NewReader(results)
	out, err := count.Output()
	if err != nil {
		t.Fatalf("count.mjs: %v", err)
	}
	var c suiteCounts
	if err := json.Unmarshal(out, &c); err != nil {
		t.Fatalf("count.mjs printed %q: %v", out, err)
	}
	pass, fail := c.Counts["pass"], c.Counts["fail"]
	t.Logf("http-cache-tests %s: %d tests; required: %d pass, %d fail; optimal: %d pass, %d fail; checks: %d yes, %d no; "+
		"setup failed %d, dependency failed %d", cacheSuiteVersion, c.Counts["total"], pass, fail,
		c.Counts["optimal_pass"], c.Counts["optimal_fail"], c.Counts["check_yes"], c.Counts["check_no"],
		c.Counts["setup_failed"], c.Counts["dependency_failed"])
	for _, f := range c.Failures {
		t.Logf("required failure %s: %s: %v", f.ID, f.Name, f.Result)
	}
	if fail > cacheSuiteMaxFails {
		t.Errorf("%d required failures, more than the %d recorded", fail, cacheSuiteMaxFails)
	}
	if pass < cacheSuiteMinPasses {
		t.Errorf("%d required passes, fewer than the %d recorded", pass, cacheSuiteMinPasses)
	}
}

// freeLoopbackPort returns a port free on 127.0.0.1 now.
func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	_, port, err := net.SplitHostPort(freePort(t))
	if err != nil {
		t.Fatal(err)
	}
	return port
}
