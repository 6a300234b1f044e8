package listen

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

func TestUDPSharesOneAddress(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			conns, err := UDP(context.Background(), netip.MustParseAddrPort(addr), 4)
			if err != nil {
				t.Fatal(err)
			}
			defer closeAll(conns)
			if len(conns) != 4 {
				t.Fatalf("got %d sockets, want 4", len(conns))
			}
			ap := conns[0].LocalAddr().(*net.UDPAddr).AddrPort()
			for _, c := range conns[1:] {
				if got := c.LocalAddr().(*net.UDPAddr).AddrPort(); got != ap {
					t.Fatalf("sockets bound to %s and %s, want one address", ap, got)
				}
			}
			// Datagrams from 32 client ports each reach one socket,
			// and a flow always the same one.
			got := make(chan netip.AddrPort, 128)
			for _, c := range conns {
				go func() {
					buf := make([]byte, 64)
					for {
						_, from, err := c.ReadFromUDPAddrPort(buf)
						if err != nil {
							return
						}
						got <- from
					}
				}()
			}
			for range 32 {
				c, err := net.Dial("udp", ap.String())
				if err != nil {
					t.Fatal(err)
				}
				c.Write([]byte("a"))
				c.Write([]byte("b"))
				c.Close()
			}
			deadline := time.After(10 * time.Second)
			for range 64 {
				select {
				case <-got:
				case <-deadline:
					t.Fatal("datagrams were not received")
				}
			}
		})
	}
}

// TestUDPWildcardReportsDestination checks that a socket bound to every
// address learns where each datagram was sent, which replies need as their
// source.
func TestUDPWildcardReportsDestination(t *testing.T) {
	tests := []struct {
		name, bind, to string
	}{
		{"ipv4", "0.0.0.0:0", "127.0.0.2"},
		{"ipv6", "[::]:0", "::1"},
		{"ipv4 on dual stack", "[::]:0", "127.0.0.3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conns, err := UDP(context.Background(), netip.MustParseAddrPort(tt.bind), 1)
			if err != nil {
				t.Fatal(err)
			}
			defer closeAll(conns)
			port := conns[0].LocalAddr().(*net.UDPAddr).AddrPort().Port()
			c, err := net.Dial("udp", netip.AddrPortFrom(netip.MustParseAddr(tt.to), port).String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte("where"))
			conns[0].SetReadDeadline(time.Now().Add(5 * time.Second))
			buf, oob := make([]byte, 64), make([]byte, 128)
			_, oobn, _, _, err := conns[0].ReadMsgUDPAddrPort(buf, oob)
			if err != nil {
				t.Fatal(err)
			}
			var dst net.IP
			if netip.MustParseAddrPort(tt.bind).Addr().Is4() {
				var cm ipv4.ControlMessage
				err = cm.Parse(oob[:oobn])
				dst = cm.Dst
			} else {
				var cm ipv6.ControlMessage
				err = cm.Parse(oob[:oobn])
				dst = cm.Dst
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := netip.AddrFromSlice(dst); got.Unmap() != netip.MustParseAddr(tt.to) {
				t.Fatalf("destination %v, want %s", dst, tt.to)
			}
		})
	}
}

func TestUDPReadBuffer(t *testing.T) {
	conns, err := UDP(context.Background(), netip.MustParseAddrPort("127.0.0.1:0"), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(conns)
	rc, err := conns[0].SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var size int
	rc.Control(func(fd uintptr) { size, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) })
	if err != nil {
		t.Fatal(err)
	}
	// Linux doubles what was asked for (for its own overhead), within
	// net.core.rmem_max.
	max, _ := os.ReadFile("/proc/sys/net/core/rmem_max")
	want, _ := strconv.Atoi(strings.TrimSpace(string(max)))
	want = 2 * min(want, UDPReadBuffer)
	if size < want {
		t.Fatalf("SO_RCVBUF is %d, want %d", size, want)
	}
}

func TestUDPIPv4WildcardIsIPv4Only(t *testing.T) {
	conns, err := UDP(context.Background(), netip.MustParseAddrPort("0.0.0.0:0"), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(conns)
	port := conns[0].LocalAddr().(*net.UDPAddr).Port
	// [::]:port is free for another socket: 0.0.0.0 did not take IPv6.
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6unspecified, Port: port})
	if err != nil {
		t.Fatalf("0.0.0.0 also bound IPv6: %v", err)
	}
	c.Close()
}

func TestUDPBindErrorNamesAddress(t *testing.T) {
	// Without SO_REUSEPORT on the first socket the second bind must fail.
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	_, err = UDP(context.Background(), ap, 2)
	if err == nil {
		t.Fatal("bind to a port held without SO_REUSEPORT succeeded")
	}
	if want := ap.String(); !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name %s", err, want)
	}
}
