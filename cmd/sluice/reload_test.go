package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"sluice/config"
	"sluice/internal/admin"
)

// nameBackend answers each connection with its name, then echoes. It is
// closed when the test ends.
func nameBackend(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					c.Close()
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
				}()
				io.WriteString(c, name+"\n")
				io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// reloadConfig is a configuration of the reload tests: listener t on
// addr to pool p with backends bs, balanced by balance, its idle timeout
// idle (a change of it makes a new proxy on the same sockets).
func reloadConfig(addr, balance, idle string, extra string, bs ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "drain_timeout = \"20s\"\n%s\n[listeners.t]\nbind = %q\npool = \"p\"\nsockets = 2\nidle_timeout = %q\n",
		extra, addr, idle)
	fmt.Fprintf(&b, "[pools.p]\nbalance = %q\n", balance)
	for _, a := range bs {
		fmt.Fprintf(&b, "[[pools.p.backends]]\naddress = %q\n", a)
	}
	return b.String()
}

// stream keeps one connection busy with random bytes and checks that
// every byte comes back, in order.
type stream struct {
	sent, got atomic.Int64
	err       error
}

func runStream(addr string, stop <-chan struct{}) *stream {
	s := &stream{}
	s.run(addr, stop)
	return s
}

// run streams until stop closes, or the stream fails (s.err).
func (s *stream) run(addr string, stop <-chan struct{}) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		s.err = err
		return
	}
	defer c.Close()
	greeting := make([]byte, 0, 16)
	one := make([]byte, 1)
	for {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, one); err != nil {
			s.err = fmt.Errorf("reading greeting: %w", err)
			return
		}
		if one[0] == '\n' {
			break
		}
		greeting = append(greeting, one[0])
	}
	hs, hr := sha256.New(), sha256.New()
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	buf, in := make([]byte, 4096), make([]byte, 4096)
	for {
		select {
		case <-stop:
			if hr, hs := hr.Sum(nil), hs.Sum(nil); !bytes.Equal(hr, hs) {
				s.err = fmt.Errorf("checksums differ after %d bytes", s.got.Load())
			}
			return
		default:
		}
		n := 1 + rng.IntN(len(buf))
		for i := range n {
			buf[i] = byte(rng.Uint32())
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(buf[:n]); err != nil {
			s.err = fmt.Errorf("writing after %d bytes: %w", s.sent.Load(), err)
			return
		}
		hs.Write(buf[:n])
		s.sent.Add(int64(n))
		if _, err := io.ReadFull(c, in[:n]); err != nil {
			s.err = fmt.Errorf("reading after %d bytes: %w", s.got.Load(), err)
			return
		}
		hr.Write(in[:n])
		s.got.Add(int64(n))
	}
}

// churn opens new connections one after another until stop closes, each
// with one echoed line, and counts those that fail.
func churn(addr string, stop <-chan struct{}, ok, failed *atomic.Int64, firstErr *atomic.Value) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		if err := oneExchange(addr, i); err != nil {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
		} else {
			ok.Add(1)
		}
	}
}

func oneExchange(addr string, i int) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := fmt.Sprintf("ping %d\n", i)
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	got := make([]byte, 0, 32)
	one := make([]byte, 1)
	lines := 0
	for lines < 2 { // the greeting, then the echo
		if _, err := io.ReadFull(c, one); err != nil {
			return fmt.Errorf("connection %d: %w after %q", i, err, got)
		}
		got = append(got, one[0])
		if one[0] == '\n' {
			lines++
		}
	}
	if !strings.HasSuffix(string(got), msg) {
		return fmt.Errorf("connection %d: got %q", i, got)
	}
	return nil
}

// waitCount waits until s appears n times in p's output.
func (p *process) waitCount(t *testing.T, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(p.out.String(), s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%q printed %d times, want %d; output:\n%s", s, strings.Count(p.out.String(), s), n, p.out)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Reloads under continuous new connections and long-lived streams: not
// one connection fails, not one stream is reset or loses a byte. The
// reloads alternate between files that change the pool's balance, its
// backends and the listener's idle timeout (a new proxy on the same
// sockets).
func TestReloadsUnderLoadLoseNothing(t *testing.T) {
	a, b := nameBackend(t, "a"), nameBackend(t, "b")
	addr := freePort(t)
	files := []string{
		reloadConfig(addr, "round_robin", "10m", "", a),
		reloadConfig(addr, "least_conn", "9m", "", a, b),
		reloadConfig(addr, "round_robin", "8m", "", b),
		reloadConfig(addr, "least_conn", "8m", "", a, b),
	}
	path := writeFile(t, files[0])
	p := startSluice(t, nil, "-c", path)
	p.waitOutput(t, "listening")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var streams []*stream
	var mu sync.Mutex
	for range 6 {
		wg.Go(func() {
			s := runStream(addr, stop)
			mu.Lock()
			streams = append(streams, s)
			mu.Unlock()
		})
	}
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	for range 4 {
		wg.Go(func() { churn(addr, stop, &ok, &failed, &firstErr) })
	}
	const reloads = 200
	for i := 1; i <= reloads; i++ {
		if err := os.WriteFile(path, []byte(files[i%len(files)]), 0o644); err != nil {
			t.Fatal(err)
		}
		p.cmd.Process.Signal(syscall.SIGHUP)
		p.waitCount(t, "configuration reloaded", i)
		time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond) // spread reloads over the load, not a wait
	}
	close(stop)
	wg.Wait()
	var streamed int64
	for _, s := range streams {
		if s.err != nil {
			t.Errorf("stream: %v", s.err)
		}
		if s.sent.Load() != s.got.Load() {
			t.Errorf("stream sent %d bytes, got back %d", s.sent.Load(), s.got.Load())
		}
		streamed += s.got.Load()
	}
	t.Logf("%d reloads: %d new connections (%d failed), %d streams carried %d bytes", reloads, ok.Load(), failed.Load(), len(streams), streamed)
	if failed.Load() > 0 {
		t.Errorf("%d of %d new connections failed; first: %v", failed.Load(), failed.Load()+ok.Load(), firstErr.Load())
	}
	if ok.Load() == 0 || streamed == 0 {
		t.Errorf("no traffic moved")
	}
	if strings.Contains(p.out.String(), "reload failed") {
		t.Errorf("a reload failed:\n%s", p.out)
	}
}

// A file with errors changes nothing: every error is logged with its
// line, the traffic goes on, and the next good file is applied.
func TestReloadWithErrorsKeepsRunning(t *testing.T) {
	a, b := nameBackend(t, "a"), nameBackend(t, "b")
	addr := freePort(t)
	pid := t.TempDir() + "/sluice.pid"
	good := reloadConfig(addr, "round_robin", "10m", fmt.Sprintf("pid_file = %q", pid), a)
	path := writeFile(t, good)
	p := startSluice(t, nil, "-c", path)
	p.waitOutput(t, "listening")
	c, r, greeting := dialLine(t, addr)
	if greeting != "a" {
		t.Fatalf("greeting %q", greeting)
	}
	// Two errors: an unknown key and a pool that does not exist.
	bad := strings.Replace(good, `pool = "p"`, "pool = \"nope\"\nbogus = 1", 1)
	bad = strings.Replace(bad, a, b, 1)
	os.WriteFile(path, []byte(bad), 0o644)
	out, code := runSluice(t, "reload", "-c", path)
	if code != 1 || !strings.Contains(out, "nope") || !strings.Contains(out, "bogus") {
		t.Fatalf("sluice reload of a bad file exited %d:\n%s", code, out)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitCount(t, "reload failed", 2) // one line per error
	log := p.out.String()
	for _, want := range []string{path + ":5:", "bogus", `\"nope\"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	fmt.Fprintln(c, "still there")
	if echo, err := r.ReadString('\n'); err != nil || echo != "still there\n" {
		t.Fatalf("echo after a failed reload %q, %v", echo, err)
	}
	if _, _, g := dialLine(t, addr); g != "a" {
		t.Fatalf("after a failed reload a new connection reached %q, want a (unchanged)", g)
	}
	// The good file, with backend b instead of a, through pid_file.
	os.WriteFile(path, []byte(strings.Replace(good, a, b, 1)), 0o644)
	if out, code := runSluice(t, "reload", "-c", path); code != 0 || !strings.Contains(out, "SIGHUP") {
		t.Fatalf("sluice reload exited %d:\n%s", code, out)
	}
	p.waitOutput(t, "configuration reloaded")
	if _, _, g := dialLine(t, addr); g != "b" {
		t.Fatalf("after the reload a new connection reached %q, want b", g)
	}
	// The connection to a, removed, goes on until the drain timeout.
	fmt.Fprintln(c, "draining")
	if echo, err := r.ReadString('\n'); err != nil || echo != "draining\n" {
		t.Fatalf("echo on a removed backend %q, %v", echo, err)
	}
}

// inProcessReload runs the file at path in the test process, reloadable,
// until the test ends, and returns it with its log (printed if the test
// fails).
func inProcessReload(t *testing.T, path string) (*daemon, *lockedBuffer) {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	log := &lockedBuffer{}
	d, err := startOn(cfg, newLogger(cfg.Log, log), nil, func(d *daemon) {
		d.load = func() (*config.Config, error) { return config.Load(path) }
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Short: a UDP session would keep the drain going for its
		// whole timeout.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		d.shutdown(ctx)
		if t.Failed() {
			t.Logf("sluice log:\n%s", log)
		}
	})
	return d, log
}

// greetingsOf opens n connections to addr and counts the backends that
// greeted them. They stay open until all n are counted: with least_conn,
// a connection closed before the next is opened would leave the choice
// to how soon the proxy saw the close.
func greetingsOf(t *testing.T, addr string, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for range n {
		c, _, g := dialLine(t, addr)
		defer c.Close()
		seen[g]++
	}
	return seen
}

func countFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// A reload adds and removes backends and listeners and changes a pool's
// balance; UDP sessions and TCP connections go on through it; the admin
// API reloads and counts; and reloads leak neither goroutines nor file
// descriptors.
func TestReloadChangesBackendsListenersAndBalance(t *testing.T) {
	a, b := nameBackend(t, "a"), nameBackend(t, "b")
	echo := udpEcho(t)
	t1, t2, uaddr, adm := freePort(t), freePort(t), freePort(t), freePort(t)
	common := fmt.Sprintf(`[admin]
bind = %q
[listeners.u]
bind = %q
protocol = "udp"
pool = "q"
[pools.q]
[[pools.q.backends]]
address = %q
`, adm, uaddr, echo)
	first := reloadConfig(t1, "round_robin", "10m", common, a)
	second := reloadConfig(t1, "least_conn", "9m", common, a, b) + fmt.Sprintf("[listeners.t2]\nbind = %q\npool = \"p\"\n", t2)
	third := reloadConfig(t1, "round_robin", "9m", common, b)
	path := writeFile(t, first)
	d, _ := inProcessReload(t, path)
	api := adminClient{t: t, base: "http://" + adm}
	udpc := dialUDP(t, uaddr)
	if got := exchange(t, udpc, "one"); got != "one" {
		t.Fatalf("udp reply %q", got)
	}
	held, hr, g := dialLine(t, t1)
	if g != "a" {
		t.Fatalf("greeting %q", g)
	}

	os.WriteFile(path, []byte(second), 0o644)
	if code, body := api.do(http.MethodPost, "/api/v1/reload", ""); code != http.StatusOK {
		t.Fatalf("POST /api/v1/reload: %d %s", code, body)
	}
	if seen := greetingsOf(t, t2, 6); seen["a"] == 0 || seen["b"] == 0 {
		t.Fatalf("the added listener's connections reached %v, want a and b", seen)
	}
	var pj admin.PoolJSON
	api.get("/api/v1/pools/p", &pj)
	if pj.Balance != "least_conn" || len(pj.Backends) != 2 {
		t.Fatalf("pool p after the reload: %+v", pj)
	}
	if got := exchange(t, udpc, "two"); got != "two" {
		t.Fatalf("udp reply after a reload %q", got)
	}

	// Errors: nothing changes, the API says what they are.
	os.WriteFile(path, []byte(second+"bogus = 1\n"), 0o644)
	code, body := api.do(http.MethodPost, "/api/v1/reload", "")
	var rj admin.ReloadJSON
	if json.Unmarshal(body, &rj); code != http.StatusUnprocessableEntity || rj.Result != "failed" ||
		len(rj.Errors) != 1 || !strings.Contains(rj.Errors[0], "bogus") {
		t.Fatalf("reload of a bad file: %d %s", code, body)
	}
	if m := api.get("/metrics", nil); metric(m, "sluice_reloads_total", "result", "failed") != 1 ||
		metric(m, "sluice_reloads_total", "result", "ok") != 1 {
		t.Fatalf("reload counts:\n%s", m)
	}

	os.WriteFile(path, []byte(third), 0o644)
	if err := d.reload(); err != nil {
		t.Fatal(err)
	}
	// Its loops close its sockets once woken: soon, not at once.
	waitFor(t, 5*time.Second, "the removed listener to refuse", func() bool {
		c, err := net.DialTimeout("tcp", t2, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	if seen := greetingsOf(t, t1, 4); seen["b"] != 4 {
		t.Fatalf("after removing backend a, connections reached %v", seen)
	}
	// Started on a before any reload: still on it (until drain_timeout).
	fmt.Fprintln(held, "held")
	if line, err := hr.ReadString('\n'); err != nil || line != "held\n" {
		t.Fatalf("held connection: %q, %v", line, err)
	}
	held.Close()

	// Leaks: back and forth, then compare with what one round left.
	http.DefaultClient.CloseIdleConnections()
	baseG, baseFD := runtime.NumGoroutine(), countFDs(t)
	for i := range 20 {
		os.WriteFile(path, []byte([]string{second, third}[i%2]), 0o644)
		if err := d.reload(); err != nil {
			t.Fatal(err)
		}
		greetingsOf(t, t1, 1)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		g, fds := runtime.NumGoroutine(), countFDs(t)
		if g <= baseG && fds <= baseFD {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("after 20 reloads: %d goroutines (was %d), %d fds (was %d)\n%s",
				g, baseG, fds, baseFD, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A connection left on a proxy that a reload replaced drains at shutdown
// like the others: it goes on until it ends or the drain timeout does,
// even when the current proxies have nothing left to drain.
func TestShutdownDrainsWhatAReloadReplaced(t *testing.T) {
	a := nameBackend(t, "a")
	addr := freePort(t)
	path := writeFile(t, reloadConfig(addr, "round_robin", "10m", "", a))
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := start(cfg, newLogger(cfg.Log, io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	d.load = func() (*config.Config, error) { return config.Load(path) }
	c, r, _ := dialLine(t, addr)
	os.WriteFile(path, []byte(reloadConfig(addr, "round_robin", "9m", "", a)), 0o644)
	if err := d.reload(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.shutdown(ctx) }()
	waitFor(t, 5*time.Second, "the listener to refuse", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	fmt.Fprintln(c, "draining")
	if line, err := r.ReadString('\n'); err != nil || line != "draining\n" {
		t.Fatalf("the connection on the replaced proxy during the drain: %q, %v", line, err)
	}
	c.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown still draining after its last connection ended")
	}
}
