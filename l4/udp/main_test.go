package udp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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

// TestMain fails the package if goroutines or fds outlive the tests: every
// loop must be joined and every session's socket closed.
func TestMain(m *testing.M) {
	// Let the runtime open its poller's fds before the count.
	if c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err == nil {
		c.Close()
	}
	goroutines, fds := runtime.NumGoroutine(), countFDs()
	code := m.Run()
	if code == 0 {
		if err := settle(10*time.Second, func() error {
			if n := runtime.NumGoroutine(); n > goroutines {
				buf := make([]byte, 1<<20)
				return fmt.Errorf("goroutine leak: %d running, %d at start\n%s",
					n, goroutines, buf[:runtime.Stack(buf, true)])
			}
			if n := countFDs(); n > fds {
				return fmt.Errorf("fd leak: %d open, %d at start", n, fds)
			}
			return nil
		}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// settle retries check until it passes or d has passed.
func settle(d time.Duration, check func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func countFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

// eventually polls cond until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if settle(d, func() error {
		if cond() {
			return nil
		}
		return fmt.Errorf("timed out after %v waiting for %s", d, what)
	}) != nil {
		t.Fatalf("timed out after %v waiting for %s", d, what)
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

// text returns everything logged so far.
func (l *logSink) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// sessions returns the "session" records logged so far.
func (l *logSink) sessions() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(l.buf.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "session" {
			out = append(out, rec)
		}
	}
	return out
}

// waitEnd waits for a session record with end == want and returns it.
func (l *logSink) waitEnd(t *testing.T, want End) map[string]any {
	t.Helper()
	var got map[string]any
	eventually(t, 10*time.Second, "log line with end="+want.String(), func() bool {
		for _, r := range l.sessions() {
			if r["end"] == want.String() {
				got = r
				return true
			}
		}
		return false
	})
	return got
}

// proxy is a Server under test.
type proxy struct {
	*Server
	addr netip.AddrPort
	log  *logSink
}

// startProxy serves s on bind with two reuse-port sockets and closes it
// when the test ends.
func startProxy(t testing.TB, s *Server, bind string) *proxy {
	t.Helper()
	conns, err := listen.UDP(context.Background(), netip.MustParseAddrPort(bind), 2)
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{Server: s, addr: conns[0].LocalAddr().(*net.UDPAddr).AddrPort(), log: &logSink{}}
	if s.Logger == nil {
		s.Logger = slog.New(slog.NewJSONHandler(p.log, nil))
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(conns) }()
	eventually(t, 5*time.Second, "the loops to start", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.loops) == len(conns)
	})
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != ErrServerClosed {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return p
}

// to returns the proxy's address with its IP replaced by ip, for
// wildcard binds.
func (p *proxy) to(ip string) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(ip), p.addr.Port())
}

// newPool builds a pool over the backends' addresses.
func newPool(t *testing.T, b pool.Balance, bs ...*backend) *pool.Pool {
	t.Helper()
	o := pool.Options{Name: "test", Balance: b}
	for _, be := range bs {
		o.Backends = append(o.Backends, pool.BackendOptions{Addr: be.addr})
	}
	p, err := pool.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// backend is a loopback UDP server that answers each datagram with its
// name, a space and the datagram, replies times (once if zero).
type backend struct {
	name    string
	addr    netip.AddrPort
	replies int
	mu      sync.Mutex
	seen    map[netip.AddrPort]int // datagrams per source
}

func startBackend(t *testing.T, name, ip string, replies int) *backend {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, addr: c.LocalAddr().(*net.UDPAddr).AddrPort(), replies: max(replies, 1),
		seen: map[netip.AddrPort]int{}}
	var wg sync.WaitGroup
	wg.Go(func() { b.serve(c) })
	t.Cleanup(func() {
		c.Close()
		wg.Wait()
	})
	return b
}

func (b *backend) serve(c *net.UDPConn) {
	buf := make([]byte, 1<<16)
	msg := []byte(b.name + " ")
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf[len(msg):])
		if err != nil {
			return
		}
		b.mu.Lock()
		b.seen[from]++
		b.mu.Unlock()
		copy(buf, msg)
		for range b.replies {
			c.WriteToUDPAddrPort(buf[:len(msg)+n], from)
		}
	}
}

// sources returns how many distinct source ports b has seen: one per
// session sluice opened to it.
func (b *backend) sources() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.seen)
}

// dial opens a client socket connected to addr, closed when the test ends.
func dial(t *testing.T, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ask sends msg on c and returns the reply.
func ask(t *testing.T, c *net.UDPConn, msg string) string {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	return reply(t, c, 5*time.Second)
}

// reply reads one datagram from c, failing the test after d.
func reply(t *testing.T, c *net.UDPConn, d time.Duration) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 1<<16)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("reading a reply on %s: %v", c.LocalAddr(), err)
	}
	return string(buf[:n])
}

// silent reports whether nothing arrives on c for d.
func silent(c *net.UDPConn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 64))
	return err != nil
}

// from returns the name of the backend that wrote reply.
func from(reply string) string {
	name, _, _ := strings.Cut(reply, " ")
	return name
}
