package health

import (
	"context"
	"encoding/binary"
	"encoding/pem"
	"net"
	"net/netip"
	"os"
	"regexp"
	"sync"
	"testing"
	"time"
)

// listenUDP serves datagrams on loopback with answer (nil reply: none)
// until the test ends.
func listenUDP(t *testing.T, answer func(query []byte) [][]byte) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			for _, r := range answer(buf[:n]) {
				c.WriteToUDPAddrPort(r, from)
			}
		}
	})
	t.Cleanup(func() {
		c.Close()
		wg.Wait()
	})
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// deadUDP returns a loopback UDP port nothing listens on.
func deadUDP(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// dnsAnswer turns a query into a response with rcode and one A record
// (127.0.0.1) pointing at the question's name; id, when non-zero,
// overrides the query's ID.
func dnsAnswer(query []byte, rcode int, id uint16) []byte {
	r := append([]byte(nil), query...)
	if id != 0 {
		binary.BigEndian.PutUint16(r[0:], id)
	}
	binary.BigEndian.PutUint16(r[2:], dnsFlagQR|dnsFlagRD|1<<7|uint16(rcode))
	if rcode != 0 {
		return r
	}
	binary.BigEndian.PutUint16(r[6:], 1)
	// The name as a compression pointer to the question's, at offset 12.
	r = append(r, 0xC0, dnsHeaderLen, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1)
	return r
}

func TestDNS(t *testing.T) {
	ok := listenUDP(t, func(q []byte) [][]byte { return [][]byte{dnsAnswer(q, 0, 0)} })
	nx := listenUDP(t, func(q []byte) [][]byte { return [][]byte{dnsAnswer(q, 3, 0)} })
	// A spoofed (wrong ID) answer first, then garbage, then the real one:
	// the check must skip to the real one.
	noisy := listenUDP(t, func(q []byte) [][]byte {
		id := binary.BigEndian.Uint16(q)
		return [][]byte{dnsAnswer(q, 3, id+1), []byte("garbage"), dnsAnswer(q, 0, 0)}
	})
	spoofOnly := listenUDP(t, func(q []byte) [][]byte {
		return [][]byte{dnsAnswer(q, 0, binary.BigEndian.Uint16(q)+1)}
	})
	silent := listenUDP(t, func([]byte) [][]byte { return nil })
	tests := []struct {
		name string
		p    DNS
		addr netip.AddrPort
		want string
	}{
		{"root A", DNS{}, ok, ""},
		{"name and type", DNS{Name: "Example.COM.", Type: 28}, ok, ""},
		{"nxdomain", DNS{Name: "nope.example"}, nx, "DNS answer NXDOMAIN"},
		{"noise skipped", DNS{Name: "example.com"}, noisy, ""},
		{"wrong id ignored", DNS{Name: "example.com"}, spoofOnly, "timeout"},
		{"silent", DNS{}, silent, "timeout"},
		{"port unreachable", DNS{}, deadUDP(t), "connection refused"},
		{"bad name", DNS{Name: "a..b"}, ok, "labels must be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			wantResult(t, tt.p.Probe(ctx, tt.addr), tt.want)
		})
	}
}

func TestUDPSendExpect(t *testing.T) {
	echo := listenUDP(t, func(q []byte) [][]byte { return [][]byte{append([]byte("echo "), q...)} })
	tests := []struct {
		name string
		p    UDPSendExpect
		addr netip.AddrPort
		want string
	}{
		{"any reply", UDPSendExpect{Send: []byte("ping")}, echo, ""},
		{"expect", UDPSendExpect{Send: []byte("ping"), Expect: "echo ping"}, echo, ""},
		{"regexp", UDPSendExpect{Send: []byte("ping"), Regexp: regexp.MustCompile(`^echo p`)}, echo, ""},
		{"mismatch", UDPSendExpect{Send: []byte("ping"), Expect: "pong"}, echo, `unexpected reply "echo ping"`},
		{"no reply", UDPSendExpect{Send: []byte("ping")}, listenUDP(t, func([]byte) [][]byte { return nil }), "timeout"},
		{"port unreachable", UDPSendExpect{Send: []byte("ping")}, deadUDP(t), "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			wantResult(t, tt.p.Probe(ctx, tt.addr), tt.want)
		})
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writePEM(t *testing.T, path string, der []byte) {
	t.Helper()
	writeFile(t, path, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
}
