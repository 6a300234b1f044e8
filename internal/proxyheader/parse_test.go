package proxyheader

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net/netip"
	"strings"
	"testing"
)

var (
	ap4a = netip.MustParseAddrPort("192.0.2.1:56324")
	ap4b = netip.MustParseAddrPort("198.51.100.7:443")
	ap6a = netip.MustParseAddrPort("[2001:db8::1]:56324")
	ap6b = netip.MustParseAddrPort("[2001:db8::2]:443")
)

// v2 builds a v2 header by hand: command, family byte, address block and
// TLVs, with the length field computed, so tests do not trust AppendV2.
func v2(cmd, fam byte, block []byte, tlvs ...byte) []byte {
	b := append([]byte{}, sigV2...)
	b = append(b, cmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(block)+len(tlvs)))
	return append(append(b, block...), tlvs...)
}

func block4() []byte {
	return []byte{192, 0, 2, 1, 198, 51, 100, 7, 0xdc, 0x04, 0x01, 0xbb}
}

func block6() []byte {
	s, d := ap6a.Addr().As16(), ap6b.Addr().As16()
	return append(append(append(s[:0:0], s[:]...), d[:]...), 0xdc, 0x04, 0x01, 0xbb)
}

// withCRC appends a CRC32C TLV to a v2 header and fills in its checksum.
func withCRC(h []byte) []byte {
	h = append(h, byte(TypeCRC32C), 0, 4, 0, 0, 0, 0)
	binary.BigEndian.PutUint16(h[14:], binary.BigEndian.Uint16(h[14:])+7)
	sum := crc32.Checksum(h, crc32.MakeTable(crc32.Castagnoli))
	binary.BigEndian.PutUint32(h[len(h)-4:], sum)
	return h
}

func TestParse(t *testing.T) {
	badCRC := withCRC(v2(cmdProxy, 0x11, block4()))
	badCRC[len(badCRC)-1] ^= 1
	tests := []struct {
		name string
		in   []byte
		n    int // bytes consumed; ignored on error
		want Header
		err  error
	}{
		{name: "v1 tcp4", in: []byte("PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\nGET /"),
			n: 45, want: Header{Version: 1, Source: ap4a, Dest: ap4b}},
		{name: "v1 tcp6", in: []byte("PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n"),
			n: 46, want: Header{Version: 1, Source: ap6a, Dest: ap6b}},
		{name: "v1 tcp6 mapped", in: []byte("PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 1 2\r\n"),
			n: 45, want: Header{Version: 1, Source: netip.MustParseAddrPort("[::ffff:192.0.2.1]:1"),
				Dest: netip.MustParseAddrPort("[2001:db8::2]:2")}},
		{name: "v1 unknown", in: []byte("PROXY UNKNOWN\r\nx"), n: 15, want: Header{Version: 1, Local: true}},
		{name: "v1 unknown with rest", in: []byte("PROXY UNKNOWN ffff:: :: 1 2\r\n"), n: 29,
			want: Header{Version: 1, Local: true}},
		{name: "v1 ports 0 and 65535", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 0 65535\r\n"), n: 36,
			want: Header{Version: 1, Source: netip.MustParseAddrPort("1.2.3.4:0"),
				Dest: netip.MustParseAddrPort("5.6.7.8:65535")}},
		{name: "v1 in pieces", in: []byte("PROXY TCP4 192.0.2.1 198.5"), err: ErrNeedMore},
		{name: "v1 prefix", in: []byte("PRO"), err: ErrNeedMore},
		{name: "empty", in: nil, err: ErrNeedMore},
		{name: "v1 no CR", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), err: errV1CRLF},
		{name: "v1 too long", in: []byte("PROXY UNKNOWN " + strings.Repeat("a", 100) + "\r\n"), err: errV1Long},
		{name: "v1 signature glued", in: []byte("PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n"), err: errV1Proto},
		{name: "v1 lone PROXY", in: []byte("PROXY\r\n"), err: errV1Proto},
		{name: "v1 udp", in: []byte("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), err: errV1Proto},
		{name: "v1 five fields", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), err: errV1Fields},
		{name: "v1 seven fields", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), err: errV1Fields},
		{name: "v1 double space", in: []byte("PROXY TCP4  1.2.3.4 5.6.7.8 1\r\n"), err: errV1Addr},
		{name: "v1 ipv4 in tcp6", in: []byte("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"), err: errV1Addr},
		{name: "v1 ipv6 in tcp4", in: []byte("PROXY TCP4 ::1 ::2 1 2\r\n"), err: errV1Addr},
		{name: "v1 zone", in: []byte("PROXY TCP6 fe80::1%eth0 ::2 1 2\r\n"), err: errV1Addr},
		{name: "v1 leading zero port", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n"), err: errV1Port},
		{name: "v1 port too big", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), err: errV1Port},
		{name: "v1 signed port", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n"), err: errV1Port},
		{name: "v2 tcp4", in: append(v2(cmdProxy, 0x11, block4()), "data"...), n: 28,
			want: Header{Version: 2, Source: ap4a, Dest: ap4b}},
		{name: "v2 udp6", in: v2(cmdProxy, 0x22, block6()), n: 52,
			want: Header{Version: 2, Datagram: true, Source: ap6a, Dest: ap6b}},
		{name: "v2 local", in: v2(cmdLocal, 0x00, nil), n: 16, want: Header{Version: 2, Local: true}},
		{name: "v2 local keeps tlvs", in: v2(cmdLocal, 0x00, nil, 0x05, 0, 1, 'x'), n: 20,
			want: Header{Version: 2, Local: true, TLVs: []byte{0x05, 0, 1, 'x'}}},
		{name: "v2 local short block skipped", in: v2(cmdLocal, 0x11, []byte{1, 2, 3}), n: 19,
			want: Header{Version: 2, Local: true}},
		{name: "v2 local ignores addresses", in: v2(cmdLocal, 0x11, block4()), n: 28,
			want: Header{Version: 2, Local: true}},
		{name: "v2 unix", in: v2(cmdProxy, 0x31, make([]byte, 216)), n: 232, want: Header{Version: 2}},
		{name: "v2 tlvs", in: v2(cmdProxy, 0x11, block4(), 0x01, 0, 2, 'h', '2', 0x02, 0, 1, 'a'), n: 37,
			want: Header{Version: 2, Source: ap4a, Dest: ap4b, TLVs: []byte{0x01, 0, 2, 'h', '2', 0x02, 0, 1, 'a'}}},
		{name: "v2 crc ok", in: withCRC(v2(cmdProxy, 0x11, block4())), n: 35,
			want: Header{Version: 2, Source: ap4a, Dest: ap4b, TLVs: withCRC(v2(cmdProxy, 0x11, block4()))[28:]}},
		{name: "v2 crc bad", in: badCRC, err: errCRC},
		{name: "v2 crc short", in: v2(cmdProxy, 0x11, block4(), 0x03, 0, 2, 0, 0), err: errCRCLen},
		{name: "v2 tlv truncated", in: v2(cmdProxy, 0x11, block4(), 0x01, 0, 5, 'h'), err: errTLV},
		{name: "v2 tlv header cut", in: v2(cmdProxy, 0x11, block4(), 0x01, 0), err: errTLV},
		{name: "v2 signature prefix", in: sigV2[:7], err: ErrNeedMore},
		{name: "v2 fixed part cut", in: v2(cmdProxy, 0x11, block4())[:15], err: ErrNeedMore},
		{name: "v2 block cut", in: v2(cmdProxy, 0x11, block4())[:20], err: ErrNeedMore},
		{name: "v2 version 1", in: v2(0x11, 0x11, block4()), err: errV2Version},
		{name: "v2 command 2", in: v2(0x22, 0x11, block4()), err: errV2Version},
		{name: "v2 family 4", in: v2(cmdProxy, 0x41, block4()), err: errV2Family},
		{name: "v2 transport 3", in: v2(cmdProxy, 0x13, block4()), err: errV2Family},
		{name: "v2 family without transport", in: v2(cmdProxy, 0x10, block4()), err: errV2Family},
		{name: "v2 proxy unspec", in: v2(cmdProxy, 0x00, nil), err: errV2Unspec},
		{name: "v2 short block", in: v2(cmdProxy, 0x21, block4()), err: errV2Short},
		{name: "v2 oversized", in: v2(cmdProxy, 0x11, make([]byte, 4097)), err: errV2Length},
		{name: "not a header", in: []byte("GET / HTTP/1.1\r\n"), err: ErrMissing},
		{name: "http2 preface", in: []byte("PRI * HTTP/2.0\r\n"), err: ErrMissing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h Header
			n, err := Parse(tc.in, &h)
			if !errors.Is(err, tc.err) || err != nil && tc.err == nil {
				t.Fatalf("Parse = %d, %v; want error %v", n, err, tc.err)
			}
			if err != nil {
				if !errors.Is(err, ErrInvalid) && tc.err != ErrNeedMore && tc.err != ErrMissing {
					t.Errorf("error %v does not wrap ErrInvalid", err)
				}
				return
			}
			if n != tc.n {
				t.Errorf("n = %d, want %d", n, tc.n)
			}
			if !equalHeader(h, tc.want) {
				t.Errorf("header = %+v\nwant     %+v", h, tc.want)
			}
		})
	}
}

func equalHeader(a, b Header) bool {
	return a.Version == b.Version && a.Local == b.Local && a.Datagram == b.Datagram &&
		a.Source == b.Source && a.Dest == b.Dest && bytes.Equal(a.TLVs, b.TLVs)
}

// TestParseGrowing feeds each valid header one byte at a time: every proper
// prefix must ask for more, never fail, and the whole must parse.
func TestParseGrowing(t *testing.T) {
	for _, in := range [][]byte{
		[]byte("PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n"),
		[]byte("PROXY UNKNOWN\r\n"),
		withCRC(v2(cmdProxy, 0x21, block6(), 0x01, 0, 2, 'h', '2')),
		v2(cmdLocal, 0x00, nil),
	} {
		var h Header
		for i := range len(in) {
			if _, err := Parse(in[:i], &h); err != ErrNeedMore {
				t.Fatalf("%q: prefix of %d bytes: %v, want ErrNeedMore", in, i, err)
			}
		}
		if n, err := Parse(in, &h); err != nil || n != len(in) {
			t.Fatalf("%q: whole: %d, %v", in, n, err)
		}
	}
}

func TestTLV(t *testing.T) {
	tlvs := AppendTLV(AppendTLV(AppendTLV(nil, TypeNoop, []byte{0, 0}), TypeALPN, []byte("h2")),
		TypeUniqueID, []byte("id-1"))
	if v, ok := TLV(tlvs, TypeALPN); !ok || string(v) != "h2" {
		t.Errorf("ALPN = %q, %v", v, ok)
	}
	if v, ok := TLV(tlvs, TypeUniqueID); !ok || string(v) != "id-1" {
		t.Errorf("unique ID = %q, %v", v, ok)
	}
	if _, ok := TLV(tlvs, TypeAuthority); ok {
		t.Error("found an authority that is not there")
	}
	crc := withCRC(v2(cmdProxy, 0x11, block4(), tlvs...))
	var h Header
	if _, err := Parse(crc, &h); err != nil {
		t.Fatal(err)
	}
	fwd := AppendForwardTLVs(nil, h.TLVs)
	want := AppendTLV(AppendTLV(nil, TypeALPN, []byte("h2")), TypeUniqueID, []byte("id-1"))
	if !bytes.Equal(fwd, want) {
		t.Errorf("forwarded TLVs = %x, want %x (no CRC32C, no NOOP)", fwd, want)
	}
}
