package pool

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"sluice/internal/maglev"
)

// TestMain fails the run if a test leaves goroutines behind.
func TestMain(m *testing.M) {
	before := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			fmt.Fprintf(os.Stderr, "%d goroutines leaked\n", n-before)
			code = 1
		}
	}
	os.Exit(code)
}

// backends returns options for backends 10.0.0.1:80, 10.0.0.2:80, ...
// with the given weights.
func backends(weights ...int) []BackendOptions {
	bs := make([]BackendOptions, len(weights))
	for i, w := range weights {
		bs[i] = BackendOptions{
			Addr:   netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i / 250), byte(i%250 + 1)}), 80),
			Weight: w,
		}
	}
	return bs
}

func mustNew(t testing.TB, o Options) *Pool {
	t.Helper()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNew(t *testing.T) {
	p := mustNew(t, Options{Name: "db", Retries: 2, Backends: backends(0, 3)})
	if p.Name() != "db" || p.Retries() != 2 {
		t.Errorf("Name, Retries = %q, %d, want db, 2", p.Name(), p.Retries())
	}
	bs := p.Backends()
	if len(bs) != 2 || bs[0].String() != "10.0.0.1:80" || bs[1].Addr.String() != "10.0.0.2:80" {
		t.Fatalf("Backends() = %v, want [10.0.0.1:80 10.0.0.2:80]", bs)
	}
	if bs[0].Weight() != 1 || bs[1].Weight() != 3 {
		t.Errorf("weights = %d, %d, want 1 (from 0), 3", bs[0].Weight(), bs[1].Weight())
	}
	if !bs[0].Up() || !bs[1].Up() {
		t.Error("a new pool's backends are not up")
	}
}

func TestNewErrors(t *testing.T) {
	bad := backends(1, 1, 1)
	bad[1].Addr = bad[0].Addr
	bad[2].Addr = netip.AddrPort{}
	tests := []struct {
		name string
		o    Options
		want []string // every one must appear: all problems are reported at once
		size bool     // errors.Is(err, maglev.ErrTableSize)
	}{
		{"weight too large", Options{Name: "x", Backends: backends(1, MaxWeight+1)}, []string{`pool "x"`, "backend 1 (10.0.0.2:80): weight 257"}, false},
		{"negative weight", Options{Backends: backends(-1)}, []string{"weight -1"}, false},
		{"address", Options{Backends: bad}, []string{"backend 1: 10.0.0.1:80 duplicates backend 0", "backend 2: invalid address"}, false},
		{"port 0", Options{Backends: []BackendOptions{{Addr: netip.MustParseAddrPort("10.0.0.1:0")}}}, []string{"invalid address"}, false},
		{"negative retries", Options{Retries: -1, Backends: backends(1)}, []string{"retries -1"}, false},
		{"balance", Options{Balance: Random + 1, Backends: backends(1)}, []string{"unknown balance Balance(4)"}, false},
		{"hash key", Options{HashKey: ClientIPPort + 1, Backends: backends(1)}, []string{"unknown hash key"}, false},
		{"negative table", Options{Balance: Maglev, TableSize: -7, Backends: backends(1)}, []string{"table size -7"}, false},
		{"table not prime", Options{Balance: Maglev, TableSize: 100, Backends: backends(1)}, []string{"not prime"}, true},
		{"table too small", Options{Balance: Maglev, TableSize: 2, Backends: backends(1, 1, 1)}, []string{"bad table size"}, true},
		{"several", Options{Retries: -1, Backends: backends(1, 300)}, []string{"retries -1", "weight 300"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.o)
			if err == nil {
				t.Fatal("New succeeded, want error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if got := errors.Is(err, maglev.ErrTableSize); got != tt.size {
				t.Errorf("errors.Is(err, maglev.ErrTableSize) = %v, want %v", got, tt.size)
			}
		})
	}
}

// TestNewEmpty checks that a pool may start with no backends, as a
// discovered pool whose first resolution failed does, and says so.
func TestNewEmpty(t *testing.T) {
	p := mustNew(t, Options{Name: "x", Balance: Maglev})
	if b := p.Pick(netip.MustParseAddrPort("192.0.2.1:1000"), nil); b != nil {
		t.Errorf("Pick = %v, want nil", b)
	}
	if got, want := p.Unavailable(), `pool "x" has no backend up:`; got != want {
		t.Errorf("Unavailable() = %q, want %q", got, want)
	}
}

// TestTableSizeIgnored checks that TableSize only matters for Maglev.
func TestTableSizeIgnored(t *testing.T) {
	mustNew(t, Options{Balance: LeastConn, TableSize: 100, Backends: backends(1)})
	p := mustNew(t, Options{Balance: Maglev, TableSize: 7, Backends: backends(1, 1)})
	if got := p.sel.Load().table.Size(); got != 7 {
		t.Errorf("table size = %d, want 7", got)
	}
}

func TestActive(t *testing.T) {
	p := mustNew(t, Options{Backends: backends(1)})
	b := p.Backends()[0]
	b.Acquire()
	b.Acquire()
	b.Release()
	if b.Active() != 1 {
		t.Errorf("Active() = %d, want 1", b.Active())
	}
	b.Release()
	defer func() {
		if recover() == nil {
			t.Error("Release without Acquire did not panic")
		}
	}()
	b.Release()
}

func TestSetUpForeign(t *testing.T) {
	p := mustNew(t, Options{Name: "a", Backends: backends(1)})
	q := mustNew(t, Options{Name: "b", Backends: backends(1)})
	defer func() {
		if recover() == nil {
			t.Error("SetUp of another pool's backend did not panic")
		}
	}()
	p.SetUp(q.Backends()[0], false)
}
