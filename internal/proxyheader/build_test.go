package proxyheader

import (
	"bufio"
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/pires/go-proxyproto"
)

// libRead parses b with go-proxyproto, the reference implementation, and
// returns the header and how many bytes it consumed.
func libRead(b []byte) (*proxyproto.Header, int, error) {
	r := bytes.NewReader(b)
	// One buffer for all of b: the library insists on a v1 line arriving
	// in one read.
	br := bufio.NewReaderSize(r, max(len(b), 16))
	h, err := proxyproto.Read(br)
	return h, len(b) - br.Buffered() - r.Len(), err
}

func libAddr(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	}
	return netip.AddrPort{}
}

func TestAppendV1(t *testing.T) {
	tests := []struct {
		name     string
		src, dst netip.AddrPort
		want     string
	}{
		{"ipv4", ap4a, ap4b, "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n"},
		{"ipv6", ap6a, ap6b, "PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n"},
		{"mapped ipv4 from a dual-stack socket", netip.MustParseAddrPort("[::ffff:192.0.2.1]:1"),
			netip.MustParseAddrPort("[::ffff:10.0.0.1]:2"), "PROXY TCP4 192.0.2.1 10.0.0.1 1 2\r\n"},
		{"mixed families", ap4a, ap6b, "PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 56324 443\r\n"},
		{"zone dropped", netip.MustParseAddrPort("[fe80::1%eth0]:1"), ap6b,
			"PROXY TCP6 fe80::1 2001:db8::2 1 443\r\n"},
		{"no addresses", netip.AddrPort{}, ap4b, "PROXY UNKNOWN\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := AppendV1([]byte("x"), tc.src, tc.dst)
			if string(got[1:]) != tc.want || got[0] != 'x' {
				t.Fatalf("AppendV1 = %q, want x%q", got, tc.want)
			}
			lh, n, err := libRead(got[1:])
			if err != nil || n != len(tc.want) {
				t.Fatalf("go-proxyproto reads %q: %d, %v", tc.want, n, err)
			}
			if lh.Command.IsProxy() && libAddr(lh.SourceAddr).Port() != tc.src.Port() {
				t.Errorf("go-proxyproto source = %v", lh.SourceAddr)
			}
		})
	}
}

func TestAppendV2(t *testing.T) {
	tlvs := AppendTLV(AppendTLV(nil, TypeALPN, []byte("h2")), TypeUniqueID, []byte("c-42"))
	tests := []struct {
		name string
		h    Header
		want Header // as parsed back
	}{
		{"tcp4", Header{Source: ap4a, Dest: ap4b}, Header{Version: 2, Source: ap4a, Dest: ap4b}},
		{"udp6 with tlvs", Header{Datagram: true, Source: ap6a, Dest: ap6b, TLVs: tlvs},
			Header{Version: 2, Datagram: true, Source: ap6a, Dest: ap6b, TLVs: tlvs}},
		{"mapped is ipv4", Header{Source: netip.MustParseAddrPort("[::ffff:192.0.2.1]:56324"), Dest: ap4b},
			Header{Version: 2, Source: ap4a, Dest: ap4b}},
		{"mixed is ipv6", Header{Source: ap4a, Dest: ap6b}, Header{Version: 2,
			Source: netip.AddrPortFrom(netip.AddrFrom16(ap4a.Addr().As16()), ap4a.Port()), Dest: ap6b}},
		{"local", Header{Local: true, Source: ap4a, Dest: ap4b}, Header{Version: 2, Local: true}},
		{"no addresses is local", Header{TLVs: tlvs}, Header{Version: 2, Local: true, TLVs: tlvs}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := AppendV2([]byte("x"), &tc.h)
			if len(got)-1 != V2Len(&tc.h) {
				t.Errorf("length %d, V2Len says %d", len(got)-1, V2Len(&tc.h))
			}
			var h Header
			n, err := Parse(got[1:], &h)
			if err != nil || n != len(got)-1 || !equalHeader(h, tc.want) {
				t.Fatalf("Parse(AppendV2) = %d, %+v, %v\nwant %+v", n, h, err, tc.want)
			}
			lh, n, err := libRead(got[1:])
			if err != nil || n != len(got)-1 {
				t.Fatalf("go-proxyproto: %d, %v", n, err)
			}
			if lh.Command.IsLocal() != tc.want.Local || lh.TransportProtocol.IsDatagram() != tc.want.Datagram {
				t.Errorf("go-proxyproto reads command %v, transport %v", lh.Command, lh.TransportProtocol)
			}
			if !tc.want.Local && libAddr(lh.SourceAddr) != tc.want.Source {
				t.Errorf("go-proxyproto source = %v, want %v", lh.SourceAddr, tc.want.Source)
			}
			if raw, _ := lh.TLVs(); len(raw) != countTLVs(tc.want.TLVs) {
				t.Errorf("go-proxyproto reads %d TLVs", len(raw))
			}
		})
	}
}

func countTLVs(b []byte) int {
	n := 0
	for len(b) >= 3 {
		b = b[3+(int(b[1])<<8|int(b[2])):]
		n++
	}
	return n
}

// TestNoAllocs pins the promise the UDP path depends on: stripping and
// building a datagram's header allocate nothing, bad datagrams included.
func TestNoAllocs(t *testing.T) {
	p := &Policy{Accept: V2, Trusted: prefixes{netip.MustParsePrefix("127.0.0.0/8")}}
	peer := netip.MustParseAddr("127.0.0.1")
	good := append(v2(cmdProxy, 0x12, block4(), 0x05, 0, 1, 'x'), "payload"...)
	bad := v2(cmdProxy, 0x13, block4())
	crc := withCRC(v2(cmdProxy, 0x21, block6()))
	buf := make([]byte, 0, 256)
	h := Header{Datagram: true, Source: ap6a, Dest: ap6b}
	var out Header
	allocs := testing.AllocsPerRun(100, func() {
		_, _ = p.Datagram(peer, good, &out)
		_, _ = p.Datagram(peer, bad, &out)
		_, _ = p.Datagram(peer, good[:20], &out)
		_, _ = p.Read(peer, crc, &out)
		buf = AppendV2(buf[:0], &h)
		buf = AppendV1(buf[:0], ap6a, ap6b)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run, want 0", allocs)
	}
}
