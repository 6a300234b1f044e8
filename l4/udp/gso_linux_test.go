package udp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"sluice/internal/pool"
)

func TestGSORun(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sizes []uint32
		want  int
	}{
		{"one datagram", []uint32{64}, 1},
		{"equal sizes", []uint32{64, 64, 64, 64}, 4},
		{"a shorter last one ends the run", []uint32{64, 64, 10, 64}, 3},
		{"a longer one ends the run before it", []uint32{64, 64, 100, 64}, 2},
		{"a longer second one: alone", []uint32{64, 100}, 1},
		{"an empty first one: alone", []uint32{0, 0, 0}, 1},
		{"an empty one is no segment", []uint32{64, 64, 0}, 2},
		{"no more than one datagram's payload", []uint32{30000, 30000, 30000}, 2},
		{"up to the maximum payload", []uint32{32000, 32000, 1507, 5}, 3},
		{"no more than maxSegments", make100(maxSegments + 5), maxSegments},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := make([]mmsghdr, len(tc.sizes))
			for i, n := range tc.sizes {
				hs[i].n = n
			}
			if got := gsoRun(hs); got != tc.want {
				t.Errorf("gsoRun(%v) = %d, want %d", tc.sizes, got, tc.want)
			}
		})
	}
}

func make100(n int) []uint32 {
	s := make([]uint32, n)
	for i := range s {
		s[i] = 100
	}
	return s
}

// groSocket is a loopback UDP socket that takes segmented messages whole
// (UDP_GRO): a receive returns a run that was sent as one message with
// segmentation offload, with its segment size, where a socket without
// UDP_GRO gets the datagrams one by one. On loopback nothing else
// coalesces datagrams, so a run longer than one proves the sender used
// UDP_SEGMENT.
func groSocket(t *testing.T, ip string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1) })
	if serr != nil {
		t.Fatalf("setting UDP_GRO: %v", serr)
	}
	return c
}

// readSegments reads one message from c and cuts it into its datagrams.
func readSegments(c *net.UDPConn) ([][]byte, netip.AddrPort, error) {
	buf, oob := make([]byte, 1<<16), make([]byte, 128)
	n, oobn, _, from, err := c.ReadMsgUDPAddrPort(buf, oob)
	if err != nil {
		return nil, from, err
	}
	seg := n
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, from, err
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_UDP && m.Header.Type == unix.UDP_GRO && len(m.Data) >= 2 {
			if len(m.Data) >= 4 {
				seg = int(binary.NativeEndian.Uint32(m.Data))
			} else {
				seg = int(binary.NativeEndian.Uint16(m.Data))
			}
		}
	}
	var out [][]byte
	for b := buf[:n]; len(b) > 0; {
		k := min(seg, len(b))
		out = append(out, b[:k])
		b = b[k:]
	}
	if n == 0 {
		out = append(out, nil)
	}
	return out, from, nil
}

// TestRunToBackendIsOneMessage sends bursts of datagrams of one flow in
// one sendmmsg: sluice must pass each on whole and in order, and send runs
// of them to the backend as one message cut into segments (UDP_SEGMENT)
// rather than one send per datagram; with a PROXY header in front of each
// datagram too.
func TestRunToBackendIsOneMessage(t *testing.T) {
	t.Run("plain", func(t *testing.T) { testRunToBackend(t, nil) })
	t.Run("PROXY v2 header to the backend", func(t *testing.T) { testRunToBackend(t, headerOut{}) })
}

func testRunToBackend(t *testing.T, bp BackendPreamble) {
	be := groSocket(t, "127.0.0.1")
	pl, err := pool.New(pool.Options{Backends: []pool.BackendOptions{{Addr: be.LocalAddr().(*net.UDPAddr).AddrPort()}}})
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, &Server{Pool: pl, BackendPreamble: bp}, "127.0.0.1:0")
	c := dial(t, p.addr)
	pc := ipv4.NewPacketConn(c)

	// Each burst: 12 datagrams of 100 bytes, then one of 40 and one of
	// 100, so that runs end on a shorter datagram and restart.
	sizes := []int{100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 40, 100}
	var mu sync.Mutex
	var got [][]byte
	coalesced := 0
	var wg sync.WaitGroup
	be.SetReadDeadline(time.Now().Add(20 * time.Second))
	wg.Go(func() {
		for {
			segs, _, err := readSegments(be)
			if err != nil {
				return
			}
			mu.Lock()
			got = append(got, segs...)
			if len(segs) > 1 {
				coalesced++
			}
			mu.Unlock()
		}
	})
	defer func() {
		be.SetReadDeadline(time.Now())
		wg.Wait()
	}()

	var sent [][]byte
	deadline := time.Now().Add(15 * time.Second)
	for burst := 0; ; burst++ {
		ms := make([]ipv4.Message, len(sizes))
		for i, n := range sizes {
			b := bytes.Repeat([]byte{byte(burst), byte(i)}, n/2)
			sent = append(sent, b)
			ms[i].Buffers = [][]byte{b}
		}
		for k := 0; k < len(ms); {
			n, err := pc.WriteBatch(ms[k:], 0)
			if err != nil {
				t.Fatal(err)
			}
			k += n
		}
		var done bool
		eventually(t, 5*time.Second, "the burst at the backend", func() bool {
			mu.Lock()
			defer mu.Unlock()
			done = coalesced > 0
			return len(got) >= len(sent)
		})
		if done || time.Now().After(deadline) {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(sent) {
		t.Fatalf("backend got %d datagrams, want %d", len(got), len(sent))
	}
	// With a BackendPreamble, every datagram of the flow carries the
	// same header: the first one's bytes before its payload.
	pre := got[0][:max(0, len(got[0])-len(sent[0]))]
	if bp != nil && len(pre) == 0 {
		t.Fatal("no header in front of the first datagram at the backend")
	}
	for i := range sent {
		if want := append(pre[:len(pre):len(pre)], sent[i]...); !bytes.Equal(got[i], want) {
			t.Fatalf("datagram %d at the backend: %d bytes ending %x, want %d bytes ending %x", i,
				len(got[i]), got[i][max(0, len(got[i])-4):], len(want), want[len(want)-4:])
		}
	}
	if coalesced == 0 {
		t.Errorf("%d bursts of %d datagrams reached the backend one datagram per message: no segmentation offload",
			len(sent)/len(sizes), len(sizes))
	}
}

// TestRepliesToClientAreOneMessage has a backend answer each datagram with
// 16 replies: sluice must send each run it reads to the client as one
// message cut into segments, every reply whole and from the address the
// client sent to (on a wildcard bind, with IP_PKTINFO or IPV6_PKTINFO
// next to the segment size).
func TestRepliesToClientAreOneMessage(t *testing.T) {
	b := startBackend(t, "b1", "127.0.0.1", 16)
	for _, tt := range []struct{ name, bind, client, to string }{
		{"ipv4", "127.0.0.1:0", "127.0.0.1", "127.0.0.1"},
		{"wildcard ipv4", "0.0.0.0:0", "127.0.0.1", "127.0.0.2"},
		{"wildcard ipv6", "[::]:0", "::1", "::1"},
		{"ipv4 on dual stack", "[::]:0", "127.0.0.1", "127.0.0.3"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, &Server{Pool: newPool(t, pool.RoundRobin, b)}, tt.bind)
			c := groSocket(t, tt.client)
			to := p.to(tt.to)
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			deadline := time.Now().Add(15 * time.Second)
			coalesced := false
			for i := 0; !coalesced && time.Now().Before(deadline); i++ {
				msg := fmt.Sprintf("question %03d", i)
				if _, err := c.WriteToUDPAddrPort([]byte(msg), to); err != nil {
					t.Fatal(err)
				}
				for n := 0; n < 16; {
					segs, from, err := readSegments(c)
					if err != nil {
						t.Fatalf("reply %d of 16 to %q: %v", n, msg, err)
					}
					if from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port()); from != to {
						t.Fatalf("reply from %v, want %v", from, to)
					}
					for _, s := range segs {
						if string(s) != "b1 "+msg {
							t.Fatalf("reply %q, want %q", s, "b1 "+msg)
						}
					}
					n += len(segs)
					coalesced = coalesced || len(segs) > 1
				}
			}
			if !coalesced {
				t.Error("every reply reached the client as a message of its own: no segmentation offload")
			}
		})
	}
}
