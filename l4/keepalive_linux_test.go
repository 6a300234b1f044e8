package l4

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"sluice/internal/listen"
	"sluice/internal/netnstest"
	"sluice/internal/pool"
)

// kaOpts is a socket's keep-alive options as the kernel reports them.
type kaOpts struct{ on, idle, interval, count int }

func readKA(fd int) kaOpts {
	var k kaOpts
	k.on, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
	if k.on != 0 {
		k.idle, _ = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		k.interval, _ = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
		k.count, _ = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
	}
	return k
}

// TestKeepAliveOptions checks which sockets of a proxied connection get
// keep-alive probes: the client's inherit them from the listening socket,
// the backend's are set at connect, and none has them unless configured.
func TestKeepAliveOptions(t *testing.T) {
	ka := KeepAlive{Idle: 7 * time.Second, Interval: 2 * time.Second, Count: 4}
	want := kaOpts{1, 7, 2, 4}
	for _, tc := range []struct {
		name             string
		client, backend  KeepAlive
		wantCli, wantBak kaOpts
	}{
		{"off", KeepAlive{}, KeepAlive{}, kaOpts{}, kaOpts{}},
		{"client", ka, KeepAlive{}, want, kaOpts{}},
		{"backend", KeepAlive{}, ka, kaOpts{}, want},
		{"both, defaults", KeepAlive{Idle: 9 * time.Second}, ka, kaOpts{1, 9, 9, DefaultKeepAliveCount}, want},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startBackend(t, greeter("b"))
			p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr),
				ClientKeepAlive: tc.client, BackendKeepAlive: tc.backend})
			// A connection queued before the loops set the listening
			// socket's options misses them (as it misses TCP_NODELAY).
			waitLoops(t, p.Server, 2)
			readLine(t, dial(t, p.addr, ""))
			var mu sync.Mutex
			var got [][2]kaOpts
			p.onLoops(func(l *loop) {
				for _, c := range l.conns {
					if c.fd[sideClient] < 0 || c.phase != phaseProxying {
						continue
					}
					mu.Lock()
					got = append(got, [2]kaOpts{readKA(c.fd[sideClient]), readKA(c.fd[sideBackend])})
					mu.Unlock()
				}
			})
			if len(got) != 1 || got[0] != [2]kaOpts{tc.wantCli, tc.wantBak} {
				t.Fatalf("keep-alive (client, backend): %v, want [%v %v]", got, tc.wantCli, tc.wantBak)
			}
		})
	}
}

// TestKeepAliveClosesVanishedClient takes a client's link down under an
// idle proxied connection (as when a router moves the client's flow to
// another host): with probes of 1 s, 1 s, 2 the proxy ends the connection
// and frees its backend within about 3 s, not at the idle timeout.
func TestKeepAliveClosesVanishedClient(t *testing.T) {
	cli, lb := netnstest.New(t, "kacli"), netnstest.New(t, "kalb")
	netnstest.Link(t, cli, "c0", "192.0.2.2/24", lb, "l0", "192.0.2.1/24")
	var lns []*net.TCPListener
	lb.Do(t, func() {
		var err error
		lns, err = listen.TCP(context.Background(), netip.MustParseAddrPort("192.0.2.1:0"), 1)
		if err != nil {
			t.Fatal(err)
		}
	})
	closed := make(chan time.Time, 1)
	b := startBackend(t, func(c *net.TCPConn) {
		io.WriteString(c, "b\n")
		io.Copy(io.Discard, c)
		closed <- time.Now()
	})
	const probes = 3 * time.Second // idle 1 s + 2 probes 1 s apart
	s := &Server{Pool: newPool(t, pool.RoundRobin, 0, b.addr), ClientKeepAlive: KeepAlive{Idle: time.Second, Interval: time.Second, Count: 2}}
	sink := &logSink{}
	s.Logger = slog.New(slog.NewJSONHandler(sink, nil))
	done := make(chan error, 1)
	go func() { done <- s.Serve(lns) }()
	t.Cleanup(func() {
		s.Close()
		<-done
	})
	waitLoops(t, s, 1)
	var c net.Conn
	cli.Do(t, func() {
		var err error
		if c, err = net.DialTimeout("tcp", lns[0].Addr().String(), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	})
	defer c.Close()
	readLine(t, c)
	cli.Run(t, "ip", "link", "set", "c0", "down")
	gone := time.Now()
	select {
	case at := <-closed:
		if d := at.Sub(gone); d < time.Second {
			t.Errorf("backend connection closed %v after the client vanished, before the first probe was due", d)
		} else {
			t.Logf("backend connection closed %v after the client vanished (probes: %v)", d, probes)
		}
	case <-time.After(probes + 5*time.Second):
		t.Fatalf("the proxied connection of a vanished client was still open after %v", probes+5*time.Second)
	}
	rec := sink.waitEnd(t, EndClientReset)
	if rec["error"] == nil {
		t.Errorf("log line of the vanished client has no error: %v", rec)
	}
}

// waitLoops waits until s runs n event loops, which have set their
// listening sockets' options.
func waitLoops(t *testing.T, s *Server, n int) {
	t.Helper()
	eventually(t, 5*time.Second, "the server's event loops", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.loops) == n
	})
}
