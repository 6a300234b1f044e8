package l4

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"sluice/internal/pool"
)

// backendOf finds a backend of p by address, as an importer does.
func backendOf(p *pool.Pool) func(netip.AddrPort) *pool.Backend {
	return func(a netip.AddrPort) *pool.Backend {
		for _, b := range p.Backends() {
			if b.Addr == a {
				return b
			}
		}
		return nil
	}
}

// bulk is 8 MiB of a pattern a reader can check byte by byte.
func bulk() []byte {
	b := make([]byte, 8<<20)
	for i := range b {
		b[i] = byte(i*7 + i>>11)
	}
	return b
}

// Connections exported from one Server and imported into another go on
// where they stopped: an echoing connection keeps echoing, one the client
// half-closed still gets the backend's late answer and then its FIN, and
// bytes the first Server had read but not yet written (a reader that had
// stopped reading) arrive whole and in order. The first Server then has
// nothing left and stops; the second logs each connection once, with its
// whole byte counts.
func TestExportImportCarriesConnections(t *testing.T) {
	data := bulk()
	release := make(chan struct{})
	be := startBackend(t, func(c *net.TCPConn) {
		line := make([]byte, 1)
		if _, err := io.ReadFull(c, line); err != nil {
			return
		}
		switch line[0] {
		case 'e': // echo
			io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{c})
		case 'h': // answer after the client's FIN, once released
			io.Copy(io.Discard, c)
			<-release
			io.WriteString(c, "late\n")
		case 'b': // bulk
			c.Write(data)
		}
	})
	p := newPool(t, pool.RoundRobin, 0, be.addr)
	a := startProxy(t, &Server{Name: "a", Pool: p, Counters: NewCounters()})
	b := startProxy(t, &Server{Name: "b", Pool: p, Counters: NewCounters()})

	echo := dial(t, a.addr, "")
	echo.Write([]byte("e"))
	echo.Write([]byte("one\n"))
	if got := readLine(t, echo); got != "one" {
		t.Fatalf("echo before export %q", got)
	}
	half := dial(t, a.addr, "")
	half.Write([]byte("h"))
	half.CloseWrite()
	slow := dial(t, a.addr, "")
	slow.Write([]byte("b"))
	// The client does not read: the proxy ends up holding bytes it read
	// from the backend and could not write.
	eventually(t, 10*time.Second, "bytes held by the proxy", func() bool {
		held := false
		a.onLoops(func(l *loop) {
			for _, c := range l.conns {
				if c != nil && c.dirs[sideBackend].pending() {
					held = true
				}
			}
		})
		return held
	})
	eventually(t, 10*time.Second, "the half-close passed on", func() bool {
		done := false
		a.onLoops(func(l *loop) {
			for _, c := range l.conns {
				if c != nil && c.dirs[sideClient].done {
					done = true
				}
			}
		})
		return done
	})

	hs := a.Export()
	if len(hs) != 3 {
		t.Fatalf("exported %d connections, want 3", len(hs))
	}
	go a.Shutdown(context.Background())
	select {
	case <-a.done:
		a.done <- ErrServerClosed // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("the exporting server still serving after giving its connections away and shutting down")
	}
	if n := p.Backends()[0].Active(); n != 0 {
		t.Fatalf("backend counts %d connections between export and import, want 0", n)
	}
	if n := a.Counters.Live(); n != 0 {
		t.Fatalf("the exporter's counters: %d live, want 0", n)
	}
	a.Counters.Backends(func(addr netip.AddrPort, bc *BackendCounters) {
		bc.Ends(func(e End, n uint64) { t.Errorf("the exporter counted %d ended with %v", n, e) })
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n, err := b.Import(ctx, hs, backendOf(p)); n != 3 || err != nil {
		t.Fatalf("Import: %d, %v", n, err)
	}
	if n := p.Backends()[0].Active(); n != 3 {
		t.Fatalf("backend counts %d connections after import, want 3", n)
	}
	if n := b.Counters.Live(); n != 3 {
		t.Fatalf("the importer's counters: %d live, want 3", n)
	}

	echo.Write([]byte("two\n"))
	if got := readLine(t, echo); got != "two" {
		t.Fatalf("echo after import %q", got)
	}
	close(release)
	if got := readLine(t, half); got != "late" {
		t.Fatalf("half-closed connection after import read %q", got)
	}
	half.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := half.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("half-closed connection: read %d, %v; want EOF", n, err)
	}
	slow.SetReadDeadline(time.Now().Add(20 * time.Second))
	got := sha256.New()
	if n, err := io.CopyN(got, slow, int64(len(data))); err != nil {
		t.Fatalf("bulk after import: %d of %d bytes: %v", n, len(data), err)
	}
	if want := sha256.Sum256(data); string(got.Sum(nil)) != string(want[:]) {
		t.Fatal("bulk bytes changed across the hand-over")
	}

	rec := b.log.waitEnd(t, EndClientClosed)
	if rec["bytes_in"] != float64(1) || rec["bytes_out"] != float64(5) {
		t.Errorf("half-closed connection's line in the importer: %v", rec)
	}
	echo.Close()
	slow.Close()
	eventually(t, 10*time.Second, "three lines in the importer", func() bool { return len(b.log.conns()) == 3 })
	eventually(t, 10*time.Second, "the importer's counters back to 0 live", func() bool { return b.Counters.Live() == 0 })
	b.Counters.Backends(func(addr netip.AddrPort, bc *BackendCounters) {
		if bc.Live() != 0 {
			t.Errorf("backend %v: %d live in the importer's counters", addr, bc.Live())
		}
	})
	if n := len(a.log.conns()); n != 0 {
		t.Errorf("the exporter logged %d connection lines, want none: %v", n, a.log.conns())
	}
	for _, r := range b.log.conns() {
		if r["bytes_in"] == float64(9) && r["bytes_out"] != float64(8) {
			t.Errorf("echo connection's line: %v", r)
		}
	}
}

// setListAt keeps a timer list in order of last activity, whatever the
// order connections are put in.
func TestSetListAtKeepsOrder(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lasts []time.Duration
	}{
		{"empty list", []time.Duration{5}},
		{"oldest last", []time.Duration{10, 20, 5}},
		{"middle", []time.Duration{10, 30, 20}},
		{"newest", []time.Duration{10, 20, 30}},
		{"equal", []time.Duration{10, 10, 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &loop{now: 100}
			for i := range l.lists {
				l.lists[i].timeout = time.Hour
			}
			for range tc.lasts {
				l.alloc()
			}
			for i, last := range tc.lasts {
				l.setListAt(l.conns[i], listOpen, last)
			}
			var got []time.Duration
			var prev *conn
			for c := l.lists[listOpen].front; c != nil; c = c.next {
				if c.prev != prev {
					t.Fatal("broken back link")
				}
				got = append(got, c.last)
				prev = c
			}
			if l.lists[listOpen].back != prev || len(got) != len(tc.lasts) {
				t.Fatalf("list %v, back %p, want %d entries", got, l.lists[listOpen].back, len(tc.lasts))
			}
			for i := 1; i < len(got); i++ {
				if got[i] < got[i-1] {
					t.Fatalf("out of order: %v", got)
				}
			}
		})
	}
}

// Export stops accepting without closing the listening sockets: a client
// connecting then waits in the queue, neither refused nor served. After a
// failed hand-over, Import puts the connections back and Resume serves
// the queue.
func TestExportPausesAcceptingUntilResume(t *testing.T) {
	be := startBackend(t, greeter("a"))
	a := startProxy(t, &Server{Name: "a", Pool: newPool(t, pool.RoundRobin, 0, be.addr)})
	c1 := dial(t, a.addr, "")
	if got := readLine(t, c1); got != "a" {
		t.Fatalf("greeting %q", got)
	}
	hs := a.Export()
	if len(hs) != 1 {
		t.Fatalf("exported %d, want 1", len(hs))
	}
	c2 := dial(t, a.addr, "") // queued: the socket is open
	c2.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c2.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a client connecting after Export read %d bytes, %v; want nothing yet", n, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n, err := a.Import(ctx, hs, nil); n != 1 || err != nil {
		t.Fatalf("Import back: %d, %v", n, err)
	}
	a.Resume()
	if got := readLine(t, c2); got != "a" {
		t.Fatalf("queued client after Resume: greeting %q", got)
	}
	c1.Write([]byte("back\n"))
	if got := readLine(t, c1); got != "back" {
		t.Fatalf("echo after the connection came back %q", got)
	}
}
