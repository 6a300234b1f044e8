package listen

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestTCPSharesOneAddress(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			lns, err := TCP(context.Background(), netip.MustParseAddrPort(addr), 4)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				for _, ln := range lns {
					ln.Close()
				}
			}()
			if len(lns) != 4 {
				t.Fatalf("got %d listeners, want 4", len(lns))
			}
			ap := lns[0].Addr().(*net.TCPAddr).AddrPort()
			for _, ln := range lns[1:] {
				if got := ln.Addr().(*net.TCPAddr).AddrPort(); got != ap {
					t.Fatalf("sockets bound to %s and %s, want one address", ap, got)
				}
			}
			// Every connection must be accepted by one of the sockets.
			got := make(chan int, 64)
			for i, ln := range lns {
				go func() {
					for {
						c, err := ln.Accept()
						if err != nil {
							return
						}
						c.Close()
						got <- i
					}
				}()
			}
			for range 32 {
				c, err := net.DialTimeout("tcp", ap.String(), 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				c.Close()
			}
			deadline := time.After(10 * time.Second)
			for range 32 {
				select {
				case <-got:
				case <-deadline:
					t.Fatal("connections were not accepted")
				}
			}
		})
	}
}

func TestTCPBindErrorNamesAddress(t *testing.T) {
	// Without SO_REUSEPORT on the first socket the second bind must fail.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	_, err = TCP(context.Background(), ap, 2)
	if err == nil {
		t.Fatal("bind to a port held without SO_REUSEPORT succeeded")
	}
	if want := ap.String(); !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name %s", err, want)
	}
}
