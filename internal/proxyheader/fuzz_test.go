package proxyheader

import (
	"bytes"
	"errors"

	"net/netip"
	"testing"

	"github.com/pires/go-proxyproto"
)

func fuzzSeeds(f *testing.F) {
	for _, s := range [][]byte{
		[]byte("PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\nGET /"),
		[]byte("PROXY TCP6 2001:db8::1 ::ffff:1.2.3.4 1 65535\r\n"),
		[]byte("PROXY UNKNOWN\r\n"),
		[]byte("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n"),
		v2(cmdProxy, 0x11, block4(), 0x01, 0, 2, 'h', '2'),
		v2(cmdProxy, 0x22, block6()),
		v2(cmdLocal, 0x00, nil, 0x04, 0, 0),
		v2(cmdLocal, 0x11, []byte{1}),
		v2(cmdProxy, 0x31, make([]byte, 216)),
		withCRC(v2(cmdProxy, 0x11, block4())),
		[]byte("GET / HTTP/1.1\r\n"),
		sigV2[:9],
	} {
		f.Add(s)
	}
}

// FuzzParse holds Parse to its contract and to go-proxyproto: a header
// Parse accepts, the library reads the same (length, command, addresses,
// TLVs); one the library refuses, Parse refuses too. Parse may refuse more
// (malformed TLVs, a wrong CRC32C, which the library does not check).
func FuzzParse(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Header
		n, err := Parse(b, &h)
		switch {
		case err == nil:
			if n <= 0 || n > len(b) || n > MaxLen {
				t.Fatalf("n = %d of %d bytes", n, len(b))
			}
			checkPrefixes(t, b[:n], h)
			checkAgainstLibrary(t, b[:n], h)
		case err == ErrNeedMore:
			if len(b) >= MaxLen {
				t.Fatalf("need more after %d bytes", len(b))
			}
			if _, _, lerr := libRead(b); lerr == nil {
				t.Fatalf("incomplete for us, a header for go-proxyproto: %q", b)
			}
		case err == ErrMissing:
			if _, _, lerr := libRead(b); !errors.Is(lerr, proxyproto.ErrNoProxyProtocol) {
				t.Fatalf("no header for us, %v for go-proxyproto", lerr)
			}
		case errors.Is(err, ErrInvalid):
			lh, _, lerr := libRead(b)
			if lerr == nil && !ourStricter(err, lh) {
				t.Fatalf("refused (%v), go-proxyproto accepts %+v: %q", err, lh, b)
			}
		default:
			t.Fatalf("unclassified error %v", err)
		}
	})
}

// ourStricter reports whether err is a check that Parse makes and the
// library leaves to its caller.
func ourStricter(err error, lh *proxyproto.Header) bool {
	if _, terr := lh.TLVs(); terr != nil && err == errTLV {
		return true
	}
	return err == errCRC || err == errCRCLen
}

// checkPrefixes checks that every proper prefix of a header asks for more
// (sampled: the first, the last, and a few between).
func checkPrefixes(t *testing.T, hdr []byte, want Header) {
	var h Header
	for _, i := range []int{0, 1, len(hdr) / 2, len(hdr) - 1} {
		if _, err := Parse(hdr[:i], &h); err != ErrNeedMore {
			t.Fatalf("prefix of %d bytes of %q: %v", i, hdr, err)
		}
	}
	if n, err := Parse(hdr, &h); err != nil || n != len(hdr) || !equalHeader(h, want) {
		t.Fatalf("header alone parses differently: %d, %v", n, err)
	}
}

func checkAgainstLibrary(t *testing.T, hdr []byte, h Header) {
	lh, n, err := libRead(hdr)
	if err != nil {
		if ourStricter(err, lh) {
			return
		}
		t.Fatalf("accepted %+v, go-proxyproto refuses: %v: %q", h, err, hdr)
	}
	if n != len(hdr) || int(lh.Version) != h.Version || lh.Command.IsLocal() != h.Local {
		t.Fatalf("go-proxyproto reads %d bytes, %+v; we read %d, %+v", n, lh, len(hdr), h)
	}
	if h.Version == 2 && !h.Local && lh.TransportProtocol.IsDatagram() != h.Datagram {
		t.Fatalf("transport %v, we say datagram=%v", lh.TransportProtocol, h.Datagram)
	}
	if !h.Local && !lh.TransportProtocol.IsUnix() {
		if libAddr(lh.SourceAddr) != h.Source || libAddr(lh.DestinationAddr) != h.Dest {
			t.Fatalf("go-proxyproto reads %v -> %v, we %v -> %v",
				lh.SourceAddr, lh.DestinationAddr, h.Source, h.Dest)
		}
	}
	if raw, _ := lh.TLVs(); h.Version == 2 {
		var ours []proxyproto.TLV
		for rest := h.TLVs; len(rest) > 0; {
			l := int(rest[1])<<8 | int(rest[2])
			tlv := proxyproto.TLV{Type: proxyproto.PP2Type(rest[0])}
			if tlv.Type != proxyproto.PP2_TYPE_NOOP {
				tlv.Value = rest[3 : 3+l]
			}
			ours = append(ours, tlv)
			rest = rest[3+l:]
		}
		if len(raw) != len(ours) {
			t.Fatalf("go-proxyproto reads %d TLVs, we %d", len(raw), len(ours))
		}
		for i := range raw {
			if raw[i].Type != ours[i].Type || !bytes.Equal(raw[i].Value, ours[i].Value) {
				t.Fatalf("TLV %d: go-proxyproto %v, we %v", i, raw[i], ours[i])
			}
		}
	}
}

// FuzzAppend builds headers from arbitrary addresses and TLVs; Parse and
// go-proxyproto must both read back what was meant.
func FuzzAppend(f *testing.F) {
	f.Add(ap4a.Addr().AsSlice(), ap4b.Addr().AsSlice(), uint16(1), uint16(2), false, false, []byte("h2"))
	f.Add(ap6a.Addr().AsSlice(), ap4b.Addr().AsSlice(), uint16(0), uint16(65535), true, false, []byte{})
	f.Add([]byte{}, ap4b.Addr().AsSlice(), uint16(0), uint16(65535), false, true, []byte("x"))
	f.Fuzz(func(t *testing.T, sb, db []byte, sp, dp uint16, dgram, local bool, alpn []byte) {
		s, _ := netip.AddrFromSlice(sb)
		d, _ := netip.AddrFromSlice(db)
		in := Header{Local: local, Datagram: dgram, Source: netip.AddrPortFrom(s, sp),
			Dest: netip.AddrPortFrom(d, dp), TLVs: AppendTLV(nil, TypeALPN, alpn[:min(len(alpn), 1000)])}
		b := AppendV2(nil, &in)
		var h Header
		if n, err := Parse(b, &h); err != nil || n != len(b) || n != V2Len(&in) {
			t.Fatalf("AppendV2 %+v: Parse = %d, %v (length %d, V2Len %d)", in, n, err, len(b), V2Len(&in))
		}
		checkAgainstLibrary(t, b, h)
		addressed := s.IsValid() && d.IsValid() && !local
		if h.Addressed() != addressed || addressed && (h.Source.Addr().Unmap() != s.Unmap() || h.Source.Port() != sp) {
			t.Fatalf("built %+v, read back %+v", in, h)
		}
		b = AppendV1(nil, in.Source, in.Dest)
		if n, err := Parse(b, &h); err != nil || n != len(b) {
			t.Fatalf("AppendV1 %q: Parse = %d, %v", b, n, err)
		}
		checkAgainstLibrary(t, b, h)
		if (s.IsValid() && d.IsValid()) != h.Addressed() || h.Addressed() && h.Dest.Port() != dp {
			t.Fatalf("built %q, read back %+v", b, h)
		}
	})
}
