package proxyheader

import (
	"net/netip"
	"testing"
)

// The library rows are the same work through go-proxyproto's Read (a
// bufio.Reader over the bytes), what a Conn-free use of it costs.
func BenchmarkParse(b *testing.B) {
	for _, bc := range []struct {
		name string
		in   []byte
	}{
		{"v1", []byte("PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n")},
		{"v2", v2(cmdProxy, 0x11, block4())},
		{"v2-tlvs", v2(cmdProxy, 0x21, block6(), AppendTLV(AppendTLV(nil, TypeALPN, []byte("h2")),
			TypeUniqueID, make([]byte, 32))...)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			var h Header
			for b.Loop() {
				if _, err := Parse(bc.in, &h); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"-go-proxyproto", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := libRead(bc.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDatagram(b *testing.B) {
	p := &Policy{Accept: V2, Trusted: prefixes{netip.MustParsePrefix("127.0.0.0/8")}}
	peer := netip.MustParseAddr("127.0.0.1")
	d := append(v2(cmdProxy, 0x12, block4()), make([]byte, 512)...)
	b.ReportAllocs()
	var h Header
	for b.Loop() {
		if _, err := p.Datagram(peer, d, &h); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppend(b *testing.B) {
	h := Header{Source: ap6a, Dest: ap6b, TLVs: AppendTLV(nil, TypeUniqueID, make([]byte, 16))}
	buf := make([]byte, 0, 128)
	b.Run("v1", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf = AppendV1(buf[:0], h.Source, h.Dest)
		}
	})
	b.Run("v2", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf = AppendV2(buf[:0], &h)
		}
	})
}
