package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// bin is the sluice binary built for these tests.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sluice-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "sluice")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building sluice:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// lockedBuffer collects a child's output while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// process is a sluice started by a test.
type process struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan error
}

// startSluice runs the binary with args (under wrap, e.g. strace, if
// given) and kills it when the test ends if it is still running.
func startSluice(t *testing.T, wrap []string, args ...string) *process {
	t.Helper()
	argv := append(append(wrap, bin), args...)
	p := &process{cmd: exec.Command(argv[0], argv[1:]...), out: &lockedBuffer{}, done: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// waitOutput waits until the output contains s.
func (p *process) waitOutput(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("sluice never printed %q; output:\n%s", s, p.out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *process) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(d):
		t.Fatalf("sluice still running after %v; output:\n%s", d, p.out)
		return -1
	}
}

func runSluice(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func dialLine(t *testing.T, addr string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading greeting from %s: %v", addr, err)
	}
	return c, r, strings.TrimSpace(line)
}

func TestDemoBalancesAcrossThreeBackends(t *testing.T) {
	p := startSluice(t, nil, "demo")
	p.waitOutput(t, "nc 127.0.0.1 7000")
	seen := map[string]bool{}
	for i := range 6 {
		c, r, greeting := dialLine(t, "127.0.0.1:7000")
		if !strings.HasPrefix(greeting, "hello from demo backend") {
			t.Fatalf("greeting %q", greeting)
		}
		seen[greeting] = true
		fmt.Fprintf(c, "ping %d\n", i)
		if echo, err := r.ReadString('\n'); err != nil || echo != fmt.Sprintf("ping %d\n", i) {
			t.Fatalf("echo %q, %v", echo, err)
		}
		c.Close()
	}
	if len(seen) != 3 {
		t.Fatalf("6 connections reached %d backends, want 3: %v", len(seen), seen)
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("demo exited %d after SIGINT; output:\n%s", code, p.out)
	}
	// One log line per connection, with why it ended.
	if n := strings.Count(p.out.String(), "end=client_closed"); n != 6 {
		t.Fatalf("%d connection log lines, want 6; output:\n%s", n, p.out)
	}
}

func TestCheck(t *testing.T) {
	if out, code := runSluice(t, "check", "-c", "../../examples/sluice.toml"); code != 0 {
		t.Fatalf("check of the example exited %d:\n%s", code, out)
	}
	bad := writeFile(t, `drain_timeout = 30
[listeners.a]
bind = "127.0.0.1:7000"
pool = "nope"
`)
	out, code := runSluice(t, "check", "-c", bad)
	if code != 1 {
		t.Fatalf("check of a bad file exited %d, want 1:\n%s", code, out)
	}
	for _, want := range []string{bad + ":1:", "drain_timeout", bad + ":4:", `"nope"`} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	// The same file makes run refuse to start.
	if out, code := runSluice(t, "-c", bad); code != 1 || !strings.Contains(out, "drain_timeout") {
		t.Fatalf("run with a bad file exited %d:\n%s", code, out)
	}
}

func TestCommandLine(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"version"}, 0, "sluice "},
		{[]string{"help"}, 0, "sluice check -c FILE"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"run"}, 2, "-c FILE"},
		{[]string{"check", "-c", "/nonexistent/sluice.toml"}, 1, "/nonexistent/sluice.toml"},
		{[]string{"demo", "-print"}, 0, `bind = "127.0.0.1:7000"`},
		{[]string{"demo", "-print"}, 0, "[admin]\nbind = \"127.0.0.1:9901\""},
		{[]string{"ctl", "status"}, 1, "give the admin address with -a ADDR"},
		{[]string{"ctl", "-a", "127.0.0.1:9"}, 2, "Usage: sluice ctl"},
		{[]string{"ctl", "-a", "127.0.0.1:9", "frobnicate"}, 2, "Commands:"},
		{[]string{"ctl", "-a", "127.0.0.1:9", "status"}, 1, "calling the admin API"},
		{[]string{"explain", "-c", "x.toml"}, 2, "usage: sluice explain -c FILE --pool POOL --client IP:PORT"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, code := runSluice(t, tt.args...)
			if code != tt.code || !strings.Contains(out, tt.want) {
				t.Fatalf("exit %d, want %d; output lacks %q?\n%s", code, tt.code, tt.want, out)
			}
		})
	}
}

// echoBackend serves a greeting then echoes, on a loopback port.
func echoBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				io.WriteString(c, "hello\n")
				io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// freePort returns a loopback address that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func simpleConfig(listen, backend, drain string) string {
	return fmt.Sprintf(`drain_timeout = %q
[listeners.t]
bind = %q
pool = "p"
sockets = 2
[pools.p]
[[pools.p.backends]]
address = %q
`, drain, listen, backend)
}

func TestSIGTERMDrainsThenExitsZero(t *testing.T) {
	addr := freePort(t)
	p := startSluice(t, nil, "-c", writeFile(t, simpleConfig(addr, echoBackend(t), "30s")))
	p.waitOutput(t, "listening")
	c, r, _ := dialLine(t, addr)
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.waitOutput(t, "shutting down")
	// The live connection keeps working during the drain...
	fmt.Fprintln(c, "during drain")
	if echo, err := r.ReadString('\n'); err != nil || echo != "during drain\n" {
		t.Fatalf("echo during drain %q, %v", echo, err)
	}
	// ...and sluice exits 0 as soon as it ends.
	c.Close()
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit %d; output:\n%s", code, p.out)
	}
}

func TestDrainTimeoutClosesConnections(t *testing.T) {
	addr := freePort(t)
	p := startSluice(t, nil, "-c", writeFile(t, simpleConfig(addr, echoBackend(t), "300ms")))
	p.waitOutput(t, "listening")
	c, r, _ := dialLine(t, addr)
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit %d; output:\n%s", code, p.out)
	}
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("connection still open after the drain timeout")
	}
	c.Close()
	if !strings.Contains(p.out.String(), "end=drain") {
		t.Fatalf("no end=drain log line:\n%s", p.out)
	}
}

func TestBindFailureIsReported(t *testing.T) {
	// A port held without SO_REUSEPORT cannot be shared.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	out, code := runSluice(t, "-c", writeFile(t, simpleConfig(addr, "127.0.0.1:9", "1s")))
	if code != 1 || !strings.Contains(out, "listener t") || !strings.Contains(out, addr) {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
}

// SIGHUP is sent out of habit by operators and log-rotation scripts; its
// default action would kill sluice and reset every connection. It reloads
// the (unchanged) file.
func TestSIGHUPKeepsServing(t *testing.T) {
	addr := freePort(t)
	p := startSluice(t, nil, "-c", writeFile(t, simpleConfig(addr, echoBackend(t), "1s")))
	p.waitOutput(t, "listening")
	c, r, _ := dialLine(t, addr)
	defer c.Close()
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitOutput(t, "configuration reloaded")
	fmt.Fprintln(c, "after hup")
	if echo, err := r.ReadString('\n'); err != nil || echo != "after hup\n" {
		t.Fatalf("echo after SIGHUP %q, %v; output:\n%s", echo, err, p.out)
	}
	c2, r2, _ := dialLine(t, addr)
	defer c2.Close()
	fmt.Fprintln(c2, "new")
	if echo, err := r2.ReadString('\n'); err != nil || echo != "new\n" {
		t.Fatalf("new connection after SIGHUP: %q, %v", echo, err)
	}
}
