package l4

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"sluice/internal/listen"
	"sluice/internal/pool"
)

// The counters follow the connections: live while they last, then their
// end, bytes, retries, connect time and duration, matching the log lines.
func TestCountersMatchTheLog(t *testing.T) {
	b := startBackend(t, greeter("b"))
	dead := deadPort(t)
	ctr := NewCounters()
	p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 1, dead, b.addr), Counters: ctr})
	addr := netip.MustParseAddrPort(b.addr)

	c := dial(t, p.addr, "")
	readLine(t, c)
	c2 := dial(t, p.addr, "")
	readLine(t, c2)
	if ctr.Live() != 2 {
		t.Errorf("live %d, want 2", ctr.Live())
	}
	var bc *BackendCounters
	ctr.Backends(func(a netip.AddrPort, x *BackendCounters) {
		if a == addr {
			bc = x
		}
	})
	if bc == nil || bc.Live() != 2 {
		t.Fatalf("backend counters %+v, want 2 live", bc)
	}
	c.Write([]byte("ping\n"))
	readLine(t, c)
	c.Close()
	c2.Close()
	eventually(t, 5*time.Second, "both connections to end", func() bool { return len(p.log.conns()) == 2 })
	if ctr.Live() != 0 || bc.Live() != 0 {
		t.Errorf("live %d, backend live %d after both ended", ctr.Live(), bc.Live())
	}
	var logIn, logOut, logRetries float64
	for _, r := range p.log.conns() {
		logIn += r["bytes_in"].(float64)
		logOut += r["bytes_out"].(float64)
		if n, ok := r["retries"].(float64); ok {
			logRetries += n
		}
	}
	in, out := bc.Bytes()
	if float64(in) != logIn || float64(out) != logOut || float64(bc.Retries()) != logRetries {
		t.Errorf("counted in=%d out=%d retries=%d, the log says %v %v %v", in, out, bc.Retries(), logIn, logOut, logRetries)
	}
	ends := map[End]uint64{}
	bc.Ends(func(e End, n uint64) { ends[e] = n })
	if ends[EndClientClosed] != 2 || len(ends) != 1 {
		t.Errorf("ends %v, want 2 client_closed", ends)
	}
	if d, ct := ctr.Duration(), ctr.ConnectTime(); d.Count != 2 || ct.Count != 2 {
		t.Errorf("%d durations and %d connect times, want 2 of each", d.Count, ct.Count)
	}
}

// A connection that never had a backend is counted under the zero
// address, with its end.
func TestCountersNoBackend(t *testing.T) {
	ctr := NewCounters()
	pl := newPool(t, pool.RoundRobin, 0, "127.0.0.1:1")
	pl.SetAdmin(pl.Backends()[0], pool.Maintenance)
	p := startProxy(t, &Server{Pool: pl, Counters: ctr})
	refused(t, p.addr)
	p.log.waitEnd(t, EndNoBackend)
	var n uint64
	ctr.Backends(func(a netip.AddrPort, b *BackendCounters) {
		if !a.IsValid() {
			b.Ends(func(e End, k uint64) {
				if e == EndNoBackend {
					n = k
				}
			})
		}
	})
	if n != 1 || ctr.Live() != 0 {
		t.Errorf("no_backend counted %d times, live %d", n, ctr.Live())
	}
}

// BenchmarkConnectionEnd compares what a connection's end costs for
// metrics: the log record built and its attributes read (what [admin]'s
// log tap did for every connection, whatever the log level; the tap's map
// lookup and adds came on top, see internal/admin's BenchmarkLogHandler)
// against the typed counters with the log at level error (no record
// built).
func BenchmarkConnectionEnd(b *testing.B) {
	addr := netip.MustParseAddrPort("10.0.0.1:5432")
	cl := &Client{Addr: netip.MustParseAddrPort("10.0.0.9:4000")}
	b.Run("log_record", func(b *testing.B) {
		s := &Server{Name: "pg", Logger: slog.New(attrReader{})}
		b.ReportAllocs()
		for b.Loop() {
			s.logEnd(cl, "10.0.0.1:5432", EndClientClosed, 100, 200, time.Second, 0, nil)
		}
	})
	b.Run("counters", func(b *testing.B) {
		s := &Server{Name: "pg", Counters: NewCounters(),
			Logger: slog.New(slog.DiscardHandler)}
		b.ReportAllocs()
		for b.Loop() {
			s.Counters.accepted()
			bc := s.Counters.connected(addr, time.Millisecond)
			s.Counters.ended(bc, addr, EndClientClosed, 100, 200, time.Second, 0)
			s.logEnd(cl, "10.0.0.1:5432", EndClientClosed, 100, 200, time.Second, 0, nil)
		}
	})
}

// attrReader takes every record and reads its attributes, as the log tap
// did, then drops it.
type attrReader struct{ slog.Handler }

func (attrReader) Enabled(context.Context, slog.Level) bool { return true }
func (attrReader) Handle(_ context.Context, r slog.Record) error {
	n := 0
	r.Attrs(func(a slog.Attr) bool {
		n += len(a.Key)
		return true
	})
	return nil
}

// BenchmarkNewConnection opens connections through a proxy, one at a time,
// each read to its backend's first bytes and closed: with [admin] as it
// was (every connection's record built and read, whatever the log level)
// and as it is (typed counters, log at level error). The difference per
// connection is far below the noise of a connection's system calls.
func BenchmarkNewConnection(b *testing.B) {
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer bln.Close()
	go func() {
		for {
			c, err := bln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("b\n"))
			c.Close()
		}
	}()
	p, err := pool.New(pool.Options{Name: "bench", Backends: []pool.BackendOptions{{Addr: bln.Addr().(*net.TCPAddr).AddrPort()}},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		log      slog.Handler
		counters *Counters
	}{
		{"log_record", attrReader{}, nil},
		{"counters", slog.DiscardHandler, NewCounters()},
	} {
		b.Run(tc.name, func(b *testing.B) {
			lns, err := listen.TCP(context.Background(), netip.MustParseAddrPort("127.0.0.1:0"), 1)
			if err != nil {
				b.Fatal(err)
			}
			addr := lns[0].Addr().String()
			s := &Server{Pool: p, Logger: slog.New(tc.log), Counters: tc.counters}
			done := make(chan struct{})
			go func() {
				defer close(done)
				s.Serve(lns)
			}()
			defer func() {
				s.Close()
				<-done
			}()
			buf := make([]byte, 2)
			// CPU time as well as wall time: on a shared machine the
			// wall time mostly measures the other tenants.
			cpu0 := cpuTime()
			for b.Loop() {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime returns the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
