package dial

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"sluice/internal/pool"
)

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	return a
}

func listener(t *testing.T) (netip.AddrPort, net.Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().(*net.TCPAddr).AddrPort(), ln
}

func newPool(t *testing.T, retries, passive int, addrs ...netip.AddrPort) *pool.Pool {
	t.Helper()
	o := pool.Options{Name: "p", Retries: retries, PassiveFailures: passive}
	for _, a := range addrs {
		o.Backends = append(o.Backends, pool.BackendOptions{Addr: a})
	}
	p, err := pool.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var client = netip.MustParseAddrPort("127.0.0.1:40000")

func TestTCPRetriesAnotherBackend(t *testing.T) {
	good, _ := listener(t)
	bad := closedPort(t)
	p := newPool(t, 1, 1, bad, good)
	sawRetry := false
	for range 4 {
		b, c, retries, err := TCP(context.Background(), p, client, time.Second)
		if err != nil {
			t.Fatalf("TCP: %v", err)
		}
		c.Close()
		if b.Addr != good {
			t.Fatalf("connected to %s, want %s", b.Addr, good)
		}
		if b.Active() != 1 {
			t.Errorf("backend returned with %d live, want 1 (acquired)", b.Active())
		}
		b.Release()
		sawRetry = sawRetry || retries == 1
	}
	if !sawRetry {
		t.Error("round robin never tried the closed port first")
	}
	if st := p.Backends()[0].State(); st == pool.StateUp {
		t.Errorf("refusing backend is %v after a failure with passive_failures = 1", st)
	}
}

func TestTCPConnectErrorAfterRetries(t *testing.T) {
	p := newPool(t, 0, 0, closedPort(t))
	_, _, _, err := TCP(context.Background(), p, client, time.Second)
	var ce *ConnectError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a *ConnectError", err)
	}
	if p.Backends()[0].Active() != 0 {
		t.Error("failed backend left acquired")
	}
}

func TestTryNoBackend(t *testing.T) {
	p := newPool(t, 2, 0, closedPort(t))
	p.SetAdmin(p.Backends()[0], pool.Maintenance)
	_, _, err := Try(context.Background(), p, client, func(*pool.Backend) error { return nil })
	if !errors.Is(err, ErrNoBackend) {
		t.Fatalf("err = %v, want ErrNoBackend", err)
	}
}

func TestTryStopsOnOtherErrors(t *testing.T) {
	a, _ := listener(t)
	b, _ := listener(t)
	p := newPool(t, 3, 0, a, b)
	other := errors.New("request body unreadable")
	calls := 0
	_, _, err := Try(context.Background(), p, client, func(*pool.Backend) error { calls++; return other })
	if !errors.Is(err, other) || calls != 1 {
		t.Fatalf("err = %v after %d calls, want the attempt's error after 1", err, calls)
	}
	calls = 0
	_, retries, err := Try(context.Background(), p, client, func(*pool.Backend) error { calls++; return Retry(other) })
	if !errors.Is(err, other) || calls != 2 || retries != 1 {
		t.Fatalf("Retry: err = %v, %d calls, %d retries; want 2 calls (both backends), 1 retry", err, calls, retries)
	}
}
