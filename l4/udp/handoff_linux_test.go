package udp

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"sluice/internal/listen"
	"sluice/internal/pool"
)

// A session exported from one Server and imported by another over the
// same listening socket (as across a binary upgrade) keeps its socket to
// the backend: the backend sees the same source port before and after, a
// reply the backend sent while neither read it reaches the client from
// the address the client sent to, so does the datagram the client sent
// meanwhile, and the session is logged once, where it ends, with its
// whole counts. The exporting Server stops reading the socket and a Held
// one starts reading it only on Resume: no datagram opens a second
// session.
func TestExportImportKeepsTheSessionSocket(t *testing.T) {
	for _, tc := range []struct{ name, bind, client string }{
		{"ipv4", "127.0.0.1:0", "127.0.0.1"},
		{"ipv4 wildcard", "0.0.0.0:0", "127.0.0.2"},
		{"ipv6", "[::1]:0", "::1"},
		{"dual-stack wildcard, ipv4 client", "[::]:0", "127.0.0.3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer be.Close()
			p, err := pool.New(pool.Options{Name: "p", Backends: []pool.BackendOptions{
				{Addr: be.LocalAddr().(*net.UDPAddr).AddrPort()}}})
			if err != nil {
				t.Fatal(err)
			}
			conns, err := listen.UDP(context.Background(), netip.MustParseAddrPort(tc.bind), 1)
			if err != nil {
				t.Fatal(err)
			}
			f, err := conns[0].File()
			if err != nil {
				t.Fatal(err)
			}
			pc, err := net.FilePacketConn(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			oldLog, newLog := &logSink{}, &logSink{}
			old := &Server{Name: "u", Pool: p, Logger: slog.New(slog.NewJSONHandler(oldLog, nil))}
			nu := &Server{Name: "u", Pool: p, Held: true, Logger: slog.New(slog.NewJSONHandler(newLog, nil))}
			serve(t, old, conns)
			serve(t, nu, []*net.UDPConn{pc.(*net.UDPConn)})

			port := conns[0].LocalAddr().(*net.UDPAddr).AddrPort().Port()
			c := dial(t, netip.AddrPortFrom(netip.MustParseAddr(tc.client), port))
			backendReads := func(want string) netip.AddrPort {
				t.Helper()
				be.SetReadDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 64)
				n, src, err := be.ReadFromUDPAddrPort(buf)
				if err != nil || string(buf[:n]) != want {
					t.Fatalf("the backend read %q, %v; want %q", buf[:n], err, want)
				}
				return src
			}
			c.Write([]byte("one"))
			src := backendReads("one")
			be.WriteToUDPAddrPort([]byte("r1"), src)
			if got := reply(t, c, 5*time.Second); got != "r1" {
				t.Fatalf("reply %q, want r1", got)
			}

			hs := old.Export()
			if len(hs) != 1 || hs[0].DatagramsIn != 1 || hs[0].DatagramsOut != 1 || hs[0].Backend != p.Backends()[0].Addr {
				t.Fatalf("exported %+v, want the one session", hs)
			}
			if st := old.Stats(); st.Sessions != 0 {
				t.Fatalf("%d sessions left after Export", st.Sessions)
			}
			// Sent while neither Server reads: they wait in the
			// sockets' queues.
			be.WriteToUDPAddrPort([]byte("late"), src)
			c.Write([]byte("two"))
			if !silent(c, 100*time.Millisecond) {
				t.Fatal("a reply went out while the session was between servers")
			}
			n, err := nu.Import(context.Background(), hs, func(a netip.AddrPort) *pool.Backend {
				for _, b := range p.Backends() {
					if b.Addr == a {
						return b
					}
				}
				return nil
			})
			if n != 1 || err != nil {
				t.Fatalf("Import adopted %d: %v", n, err)
			}
			nu.Resume()
			if got := reply(t, c, 5*time.Second); got != "late" {
				t.Fatalf("reply %q, want the one sent during the hand-over", got)
			}
			if again := backendReads("two"); again != src {
				t.Fatalf("after the hand-over the backend hears from %s, before from %s", again, src)
			}
			be.WriteToUDPAddrPort([]byte("r2"), src)
			if got := reply(t, c, 5*time.Second); got != "r2" {
				t.Fatalf("reply %q, want r2", got)
			}
			if st := nu.Stats(); st.Sessions != 1 {
				t.Fatalf("the importer has %d sessions, want 1", st.Sessions)
			}
			old.Close()
			nu.Close()
			if s := oldLog.sessions(); len(s) != 0 {
				t.Fatalf("the exporter logged %v", s)
			}
			r := newLog.waitEnd(t, EndDrain)
			if r["datagrams_in"] != 2.0 || r["datagrams_out"] != 3.0 || r["bytes_in"] != 6.0 {
				t.Fatalf("the session's line: %v", r)
			}
		})
	}
}

// serve runs s on conns until the test ends.
func serve(t *testing.T, s *Server, conns []*net.UDPConn) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.Serve(conns) }()
	s.init()
	<-s.started
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != ErrServerClosed {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
}
