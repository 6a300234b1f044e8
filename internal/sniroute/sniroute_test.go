package sniroute_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/internal/certs/mint"
	"sluice/internal/pool"
	"sluice/internal/sniroute"
	"sluice/l4"
)

func TestPick(t *testing.T) {
	a, b, def := &pool.Pool{}, &pool.Pool{}, &pool.Pool{}
	r := sniroute.New([]sniroute.Route{
		{Names: []string{"db.example.com", "*.example.com"}, Pool: a},
		{Names: []string{"*.EXAMPLE.com", "b.test."}, Pool: b}, // the wildcard is a's already
	}, def)
	for _, tc := range []struct {
		name string
		want *pool.Pool
	}{
		{"db.example.com", a}, {"web.example.com", a}, {"b.test", b},
		{"example.com", def}, {"a.b.example.com", def}, {"", def},
	} {
		if got := r.Pick(tc.name); got != l4.Picker(tc.want) {
			t.Errorf("Pick(%q) = %p, want %p", tc.name, got, tc.want)
		}
	}
	if p := sniroute.New(nil, nil).Pick("x.test"); p != nil {
		t.Errorf("no default: Pick = %v, want nil", p)
	}
}

// tlsBackend is a TLS server on loopback with its own certificate for
// name; it answers each connection with name and closes.
func tlsBackend(t *testing.T, ca *mint.CA, name string) netip.AddrPort {
	t.Helper()
	pair, err := ca.Issue(t.TempDir(), "be", mint.ECDSA, name)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(pair.CertFile, pair.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { defer c.Close(); c.Write([]byte(name + "\n")) })
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

func newPool(t *testing.T, name string, addr netip.AddrPort) *pool.Pool {
	t.Helper()
	p, err := pool.New(pool.Options{Name: name, Backends: []pool.BackendOptions{{Addr: addr}},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestPassthrough routes real TLS connections through an l4.Server by
// name: each client completes its handshake with the backend its name
// chose (the certificate proves the hello reached it untouched).
func TestPassthrough(t *testing.T) {
	ca, err := mint.NewCA("sniroute test CA")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	a := newPool(t, "a", tlsBackend(t, ca, "a.test"))
	b := newPool(t, "b", tlsBackend(t, ca, "web.b.test"))
	logs := &syncBuf{}
	srv := &l4.Server{Name: "sni", Pool: a, PreambleTimeout: 2 * time.Second,
		Preamble: sniroute.New([]sniroute.Route{{Names: []string{"a.test"}, Pool: a}, {Names: []string{"*.b.test"}, Pool: b}}, nil),
		Logger:   slog.New(slog.NewTextHandler(logs, nil))}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve([]*net.TCPListener{ln}) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	}()
	addr := ln.Addr().String()
	for _, name := range []string{"a.test", "web.b.test"} {
		c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		line := make([]byte, 64)
		n, _ := c.Read(line)
		c.Close()
		if string(line[:n]) != name+"\n" {
			t.Errorf("%s reached %q", name, line[:n])
		}
	}
	// A hello in two segments, the second late: reassembled.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(&slowConn{Conn: raw}, &tls.Config{ServerName: "a.test", RootCAs: roots})
	if err := tc.Handshake(); err != nil {
		t.Errorf("a hello split over segments: %v", err)
	}
	tc.Close()
	// An unknown name is refused (no default pool).
	if c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "other.test", RootCAs: roots}); err == nil {
		c.Close()
		t.Error("an unknown name was let through")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), `sni=other.test`) || !strings.Contains(logs.String(), "sni=web.b.test") {
		if time.Now().After(deadline) {
			t.Fatalf("no sni= in the log:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), sniroute.ErrUnknownName.Error()) {
		t.Errorf("the refusal's reason is not logged:\n%s", logs)
	}
}

// slowConn writes its first write in two parts, 50 ms apart.
type slowConn struct {
	net.Conn
	once sync.Once
}

func (s *slowConn) Write(p []byte) (int, error) {
	split := false
	s.once.Do(func() { split = len(p) > 100 })
	if !split {
		return s.Conn.Write(p)
	}
	n, err := s.Conn.Write(p[:100])
	if err != nil {
		return n, err
	}
	time.Sleep(50 * time.Millisecond) // the wait under test, not a synchronisation
	m, err := s.Conn.Write(p[100:])
	return n + m, err
}
