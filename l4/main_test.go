package l4

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/internal/listen"
	"sluice/internal/pool"
)

// TestMain fails the package if goroutines outlive the tests: every
// connection and accept loop must be joined.
// It also fails it if fds are left open, once pooled pipes are collected.
func TestMain(m *testing.M) {
	// Let the runtime open its poller's fds (epoll, eventfd) before the
	// count, so they are not taken for leaks.
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		ln.Close()
	}
	base := runtime.NumGoroutine()
	fds := countFDs()
	code := m.Run()
	if code == 0 {
		if err := waitGoroutines(base, 10*time.Second); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	if code == 0 {
		if err := waitFDs(fds, 10*time.Second); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

func countFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

func waitFDs(base int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		// Pipes dropped by the pool close in cleanups after a GC.
		runtime.GC()
		n := countFDs()
		if n <= base {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("fd leak: %d open, %d at start", n, base)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitGoroutines(base int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return nil
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			return fmt.Errorf("goroutine leak: %d running, %d at start\n%s", n, base, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// logSink collects a Server's log lines as decoded JSON records.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// conns returns the "connection" records logged so far.
func (l *logSink) conns() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(l.buf.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "connection" {
			out = append(out, rec)
		}
	}
	return out
}

// waitEnd waits for a connection record with end == want and returns it.
func (l *logSink) waitEnd(t *testing.T, want End) map[string]any {
	t.Helper()
	var got map[string]any
	eventually(t, 10*time.Second, "log line with end="+want.String(), func() bool {
		for _, r := range l.conns() {
			if r["end"] == want.String() {
				got = r
				return true
			}
		}
		return false
	})
	return got
}

// proxy is a Server under test listening on loopback.
type proxy struct {
	*Server
	addr string
	log  *logSink
	done chan error
}

// startProxy serves s on 127.0.0.1 with two reuse-port sockets and shuts it
// down (forcefully) when the test ends.
func startProxy(t *testing.T, s *Server) *proxy {
	t.Helper()
	lns, err := listen.TCP(context.Background(), netip.MustParseAddrPort("127.0.0.1:0"), 2)
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{Server: s, addr: lns[0].Addr().String(), log: &logSink{}, done: make(chan error, 1)}
	if s.Logger == nil {
		s.Logger = slog.New(slog.NewJSONHandler(p.log, nil))
	}
	go func() { p.done <- s.Serve(lns) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-p.done; err != ErrServerClosed {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return p
}

// newPool builds a pool over addrs; weights default to 1.
func newPool(t *testing.T, b pool.Balance, retries int, addrs ...string) *pool.Pool {
	t.Helper()
	o := pool.Options{Name: "test", Balance: b, Retries: retries}
	for _, a := range addrs {
		o.Backends = append(o.Backends, pool.BackendOptions{Addr: netip.MustParseAddrPort(a)})
	}
	p, err := pool.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// backend is a loopback TCP server whose connections are handled by fn.
type backend struct {
	addr  string
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func startBackend(t *testing.T, fn func(c *net.TCPConn)) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{addr: ln.Addr().String(), ln: ln}
	b.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns = append(b.conns, c)
			b.mu.Unlock()
			b.wg.Go(func() {
				defer c.Close()
				fn(c.(*net.TCPConn))
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

// greeter answers each connection with name and a newline, then echoes.
// It copies in user space, hiding ReadFrom, so that the test's own backends
// hold no splice pipes and pipe counts measure the proxy alone.
func greeter(name string) func(c *net.TCPConn) {
	return func(c *net.TCPConn) {
		if _, err := io.WriteString(c, name+"\n"); err != nil {
			return
		}
		io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{c})
	}
}

// deadPort returns a loopback address nothing listens on.
func deadPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// dial connects to addr from the given local IP (empty: any).
func dial(t *testing.T, addr, from string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// refused connects to addr and reads once. It returns what the client saw:
// the error of its connect or of its first read (io.EOF for a FIN).
// A proxy that resets a client at once may do so before the client's
// connect has returned, which then fails.
func refused(t *testing.T, addr string) error {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err != nil {
		return err
	} else {
		t.Fatalf("read %d bytes from a connection the proxy should have refused", n)
	}
	return nil
}

// readLine reads one line from c within a deadline.
func readLine(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	var b []byte
	one := make([]byte, 1)
	for {
		if _, err := c.Read(one); err != nil {
			t.Fatalf("reading a line (got %q): %v", b, err)
		}
		if one[0] == '\n' {
			return string(b)
		}
		b = append(b, one[0])
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
