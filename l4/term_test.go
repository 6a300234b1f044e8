package l4

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"sluice/internal/certs/mint"
	"sluice/internal/pool"
)

// tlsTerm is the Terminator cmd/sluice's is, reduced: a TLS server
// handshake.
type tlsTerm struct{ cfg *tls.Config }

func (t tlsTerm) Terminate(c *net.TCPConn, cl *Client) (net.Conn, []byte, error) {
	tc := tls.Server(c, t.cfg)
	if err := tc.Handshake(); err != nil {
		return nil, nil, err
	}
	cl.ServerName = tc.ConnectionState().ServerName
	return tc, nil, nil
}

// tlsStart speaks TLS to the backend.
type tlsStart struct{ cfg *tls.Config }

func (t tlsStart) StartBackend(c *net.TCPConn, cl *Client) (net.Conn, error) {
	tc := tls.Client(c, t.cfg)
	return tc, tc.Handshake()
}

// testTLS makes a CA, a server certificate for "svc.test" and the
// configurations a server and a client use with it.
func testTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	ca, err := mint.NewCA("l4 test CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pair, err := ca.Issue(dir, "svc", mint.ECDSA, "svc.test")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(pair.CertFile, pair.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return &tls.Config{Certificates: []tls.Certificate{cert}},
		&tls.Config{RootCAs: roots, ServerName: "svc.test"}
}

func startTLSProxy(t *testing.T, s *Server) (*proxy, *tls.Config) {
	t.Helper()
	srvCfg, cliCfg := testTLS(t)
	s.Terminate = tlsTerm{srvCfg}
	return startProxy(t, s), cliCfg
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config) *tls.Conn {
	t.Helper()
	c := tls.Client(dial(t, addr, ""), cfg)
	if err := c.Handshake(); err != nil {
		t.Fatalf("handshake through the proxy: %v", err)
	}
	return c
}

// Bytes go both ways decrypted, the client's close_notify reaches the
// backend as a FIN, and the backend's answer after it still reaches the
// client: half-close is passed on as on the loop.
func TestTLSHalfClose(t *testing.T) {
	be := startBackend(t, func(c *net.TCPConn) {
		got, _ := io.ReadAll(c) // to the client's end
		c.Write([]byte("got " + string(got)))
	})
	p, cfg := startTLSProxy(t, &Server{Name: "t", Pool: newPool(t, pool.RoundRobin, 0, be.addr)})
	c := dialTLS(t, p.addr, cfg)
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "got hello" {
		t.Fatalf("read %q, %v; want %q", got, err, "got hello")
	}
	rec := p.log.waitEnd(t, EndClientClosed)
	if rec["bytes_in"] != 5.0 || rec["bytes_out"] != 9.0 || rec["sni"] != "svc.test" {
		t.Errorf("log line %v: want bytes_in 5, bytes_out 9, sni svc.test", rec)
	}
}

// A backend's reset reaches the client as a reset, and counts against the
// backend.
func TestTLSBackendResetPassedOn(t *testing.T) {
	be := startBackend(t, func(c *net.TCPConn) {
		buf := make([]byte, 1)
		c.Read(buf)
		c.SetLinger(0)
		c.Close()
	})
	p, cfg := startTLSProxy(t, &Server{Name: "t", Pool: newPool(t, pool.RoundRobin, 0, be.addr)})
	c := dialTLS(t, p.addr, cfg)
	c.Write([]byte("x"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read: %v, want a reset", err)
	}
	p.log.waitEnd(t, EndBackendReset)
}

// The client's reset reaches the backend as a reset.
func TestTLSClientResetPassedOn(t *testing.T) {
	seen := make(chan error, 1)
	first := make(chan struct{})
	be := startBackend(t, func(c *net.TCPConn) {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		c.Read(make([]byte, 1))
		close(first)
		_, err := io.ReadAll(c)
		seen <- err
	})
	p, cfg := startTLSProxy(t, &Server{Name: "t", Pool: newPool(t, pool.RoundRobin, 0, be.addr)})
	raw := dial(t, p.addr, "")
	c := tls.Client(raw, cfg)
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("x"))
	<-first
	raw.SetLinger(0)
	raw.Close()
	if err := <-seen; !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("backend read: %v, want a reset", err)
	}
	p.log.waitEnd(t, EndClientReset)
}

// A client that sends no handshake is closed after HandshakeTimeout; one
// that sends something else than TLS at once.
func TestTLSHandshakeFailures(t *testing.T) {
	be := startBackend(t, greeter("b"))
	p, _ := startTLSProxy(t, &Server{Name: "t", Pool: newPool(t, pool.RoundRobin, 0, be.addr),
		HandshakeTimeout: 200 * time.Millisecond})
	c := dial(t, p.addr, "")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("a silent client was answered")
	}
	rec := p.log.waitEnd(t, EndHandshakeFailed)
	if rec["backend"] != "" {
		t.Errorf("a client without a handshake got a backend: %v", rec)
	}
	c2 := dial(t, p.addr, "")
	c2.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.ReadAll(c2)
	eventually(t, 10*time.Second, "two handshake failures", func() bool {
		n := 0
		for _, r := range p.log.conns() {
			if r["end"] == EndHandshakeFailed.String() {
				n++
			}
		}
		return n == 2
	})
}

// Nothing moving either way for IdleTimeout ends the connection, but one
// direction's traffic keeps the other open.
func TestTLSIdleTimeout(t *testing.T) {
	be := startBackend(t, func(c *net.TCPConn) {
		// Answer every byte after a tenth of the idle timeout, for
		// a while: the client's direction is idle meanwhile.
		for range 6 {
			time.Sleep(60 * time.Millisecond)
			if _, err := c.Write([]byte("t")); err != nil {
				return
			}
		}
		io.Copy(io.Discard, c)
	})
	p, cfg := startTLSProxy(t, &Server{Name: "t", Pool: newPool(t, pool.RoundRobin, 0, be.addr),
		IdleTimeout: 300 * time.Millisecond})
	c := dialTLS(t, p.addr, cfg)
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, _ := io.ReadAll(c)
	if string(got) != "tttttt" {
		t.Errorf("read %q before the idle timeout, want the backend's six bytes", got)
	}
	if d := time.Since(start); d < 600*time.Millisecond {
		t.Errorf("ended after %v: the backend's bytes did not keep it open", d)
	}
	p.log.waitEnd(t, EndIdleTimeout)
}

// A backend that speaks TLS itself (BackendStart) gets the bytes
// re-encrypted.
func TestTLSToBackend(t *testing.T) {
	beCfg, proxyToBe := testTLS(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", beCfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		line := make([]byte, 5)
		io.ReadFull(c, line)
		c.Write(append([]byte("tls:"), line...))
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	p, cfg := startTLSProxy(t, &Server{Name: "t", Pool: newPool(t, pool.RoundRobin, 0, ln.Addr().String()),
		BackendStart: tlsStart{proxyToBe}})
	c := dialTLS(t, p.addr, cfg)
	c.Write([]byte("hello"))
	got := make([]byte, 9)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "tls:hello" {
		t.Fatalf("read %q, %v", got, err)
	}
}

// A backend whose TLS handshake fails counts as a failed attempt: the
// next backend is tried.
func TestTLSBackendHandshakeRetried(t *testing.T) {
	plain := startBackend(t, func(c *net.TCPConn) { c.Write([]byte("not tls at all\n")) })
	beCfg, proxyToBe := testTLS(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", beCfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("ok"))
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	p, cfg := startTLSProxy(t, &Server{Name: "t",
		Pool:         newPool(t, pool.RoundRobin, 1, plain.addr, ln.Addr().String()),
		BackendStart: tlsStart{proxyToBe}})
	for range 2 { // whichever the round robin starts with
		c := dialTLS(t, p.addr, cfg)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if got, _ := io.ReadAll(c); string(got) != "ok" {
			t.Fatalf("read %q, want the TLS backend's ok", got)
		}
		c.Close()
	}
	p.log.waitEnd(t, EndBackendClosed)
	found := false
	for _, r := range p.log.conns() {
		if r["retries"] == 1.0 {
			found = true
		}
	}
	if !found {
		t.Errorf("no connection logged retries=1: %v", p.log.conns())
	}
}

// Shutdown waits for a live connection; at its deadline the connection is
// closed and logged end=drain.
func TestTLSDrain(t *testing.T) {
	be := startBackend(t, func(c *net.TCPConn) { io.Copy(c, c) })
	p, cfg := startTLSProxy(t, &Server{Name: "t", Pool: newPool(t, pool.RoundRobin, 0, be.addr)})
	c := dialTLS(t, p.addr, cfg)
	c.Write([]byte("x"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- p.Shutdown(ctx) }()
	// Still served during the drain.
	c.Write([]byte("y"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Errorf("echo during the drain: %v", err)
	}
	if err := <-shut; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want the deadline", err)
	}
	p.log.waitEnd(t, EndDrain)
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the connection outlived the drain")
	}
}

// Past MaxConnections, a TLS client waits in the accept queue, as a
// plain one does, until a connection ends.
func TestTLSSharesMaxConnections(t *testing.T) {
	be := startBackend(t, func(c *net.TCPConn) { io.Copy(c, c) })
	p, cfg := startTLSProxy(t, &Server{Name: "t", Pool: newPool(t, pool.RoundRobin, 0, be.addr), MaxConnections: 1})
	c1 := dialTLS(t, p.addr, cfg)
	raw := dial(t, p.addr, "")
	c2 := tls.Client(raw, cfg)
	c2.SetDeadline(time.Now().Add(300 * time.Millisecond))
	if err := c2.Handshake(); err == nil {
		t.Fatal("a second connection was served past max_connections = 1")
	}
	c1.Close()
	c3 := dialTLS(t, p.addr, cfg)
	c3.Write([]byte("z"))
	c3.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c3, make([]byte, 1)); err != nil {
		t.Errorf("after the first ended: %v", err)
	}
}

// The Admitter refuses before the handshake, and Done follows each
// admitted connection's end.
func TestTLSAdmit(t *testing.T) {
	be := startBackend(t, func(c *net.TCPConn) { io.Copy(c, c) })
	a := &admitter{deny: map[uint16]error{}, live: map[netip.AddrPort]int{}}
	p, cfg := startTLSProxy(t, &Server{Name: "t", Pool: newPool(t, pool.RoundRobin, 0, be.addr), Admit: a})
	c := dialTLS(t, p.addr, cfg)
	// An exchange first: its read takes the session tickets the proxy
	// sent after the handshake, which a close with unread bytes would
	// turn into a reset.
	c.Write([]byte("x"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	eventually(t, 10*time.Second, "the connection's end", func() bool { return len(p.log.conns()) == 1 })
	if rec := p.log.conns()[0]; rec["end"] != EndClientClosed.String() {
		t.Errorf("log line %v, want end=client_closed", rec)
	}
	a.mu.Lock()
	for addr, n := range a.live {
		if n != 0 {
			t.Errorf("%v: %d live after its end: Done not called", addr, n)
		}
	}
	a.mu.Unlock()

	a.mu.Lock()
	a.deny[0] = errors.New("not you") // see denyAll
	a.mu.Unlock()
	p2, _ := startTLSProxy(t, &Server{Name: "t", Pool: newPool(t, pool.RoundRobin, 0, be.addr), Admit: denyAll{a}})
	// The reset may come before the connect returns, or during the
	// handshake's first flight.
	if raw, err := net.Dial("tcp", p2.addr); err == nil {
		tls.Client(raw, cfg).Handshake()
		raw.Close()
	}
	rec := p2.log.waitEnd(t, EndDenied)
	if rec["error"] != "not you" {
		t.Errorf("log line %v", rec)
	}
}

// denyAll refuses every client with the admitter's error for port 0.
type denyAll struct{ *admitter }

func (d denyAll) Admit(c *Client) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.deny[0]
}

// CloseBackend ends a terminated connection to that backend, logged
// end=backend_down.
func TestTLSCloseBackend(t *testing.T) {
	be := startBackend(t, func(c *net.TCPConn) { io.Copy(c, c) })
	pl := newPool(t, pool.RoundRobin, 0, be.addr)
	p, cfg := startTLSProxy(t, &Server{Name: "t", Pool: pl})
	c := dialTLS(t, p.addr, cfg)
	c.Write([]byte("x"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	p.CloseBackend(pl.Backends()[0])
	p.log.waitEnd(t, EndBackendDown)
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read after CloseBackend: %v, want a reset", err)
	}
}

// A client that reads nothing while the backend sends ends with the idle
// timeout, not as a failure: the write to it times out like a read.
func TestTLSStalledReaderIsIdle(t *testing.T) {
	be := startBackend(t, func(c *net.TCPConn) {
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	p, cfg := startTLSProxy(t, &Server{Name: "t", Pool: newPool(t, pool.RoundRobin, 0, be.addr),
		IdleTimeout: 300 * time.Millisecond})
	c := dialTLS(t, p.addr, cfg)
	defer c.Close()
	for range 50 { // keep the client's direction busy past the timeout
		c.Write([]byte("x"))
		time.Sleep(20 * time.Millisecond)
	}
	p.log.waitEnd(t, EndIdleTimeout)
}
