package proxyheader

import (
	"errors"
	"net/netip"
	"testing"
)

// prefixes is a Trusted made of a few prefixes.
type prefixes []netip.Prefix

func (ps prefixes) Contains(a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func TestPolicyRead(t *testing.T) {
	p := &Policy{Accept: V2, Trusted: prefixes{netip.MustParsePrefix("10.0.0.0/8")}}
	trusted, untrusted := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("192.0.2.9")
	mapped := netip.MustParseAddr("::ffff:10.1.2.3")
	hdr := v2(cmdProxy, 0x11, block4())
	tests := []struct {
		name string
		peer netip.Addr
		in   []byte
		n    int
		err  error
		src  netip.AddrPort
	}{
		{"trusted v2", trusted, append(hdr, 'x'), len(hdr), nil, ap4a},
		{"trusted mapped peer", mapped, hdr, len(hdr), nil, ap4a},
		{"trusted v1 refused", trusted, []byte("PROXY UNKNOWN\r\n"), 0, errVersion, netip.AddrPort{}},
		{"trusted no header", trusted, []byte("GET /"), 0, ErrMissing, netip.AddrPort{}},
		{"trusted nothing yet", trusted, nil, 0, ErrNeedMore, netip.AddrPort{}},
		{"trusted partial", trusted, hdr[:20], 0, ErrNeedMore, netip.AddrPort{}},
		{"trusted garbage", trusted, v2(0x2f, 0x11, block4()), 0, ErrInvalid, netip.AddrPort{}},
		{"untrusted plain", untrusted, []byte("GET /"), 0, nil, netip.AddrPort{}},
		{"untrusted nothing yet", untrusted, nil, 0, nil, netip.AddrPort{}},
		{"untrusted v2", untrusted, hdr, 0, ErrUntrusted, netip.AddrPort{}},
		{"untrusted v1", untrusted, []byte("PROXY TCP4"), 0, ErrUntrusted, netip.AddrPort{}},
		{"untrusted v1 prefix", untrusted, []byte("PRO"), 0, ErrNeedMore, netip.AddrPort{}},
		{"untrusted v2 prefix", untrusted, sigV2[:5], 0, ErrNeedMore, netip.AddrPort{}},
		{"untrusted POST", untrusted, []byte("POST /"), 0, nil, netip.AddrPort{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h Header
			n, err := p.Read(tc.peer, tc.in, &h)
			if !errors.Is(err, tc.err) || (err != nil) != (tc.err != nil) {
				t.Fatalf("Read = %d, %v; want error %v", n, err, tc.err)
			}
			if n != tc.n || h.Source != tc.src {
				t.Errorf("Read = %d, source %v; want %d, %v", n, h.Source, tc.n, tc.src)
			}
		})
	}
}

func TestPolicyAccept(t *testing.T) {
	peer := netip.MustParseAddr("127.0.0.1")
	trust := prefixes{netip.MustParsePrefix("127.0.0.0/8")}
	v1 := []byte("PROXY UNKNOWN\r\n")
	v2h := v2(cmdLocal, 0, nil)
	for _, tc := range []struct {
		accept Versions
		v1, v2 bool
	}{{V1, true, false}, {V2, false, true}, {Any, true, true}, {0, false, false}} {
		p := &Policy{Accept: tc.accept, Trusted: trust}
		var h Header
		_, err1 := p.Read(peer, v1, &h)
		_, err2 := p.Read(peer, v2h, &h)
		if (err1 == nil) != tc.v1 || (err2 == nil) != tc.v2 {
			t.Errorf("accept %v: v1 %v, v2 %v", tc.accept, err1, err2)
		}
	}
}

func TestPolicyDatagram(t *testing.T) {
	p := &Policy{Accept: V2, Trusted: prefixes{netip.MustParsePrefix("::1/128")}}
	trusted, untrusted := netip.MustParseAddr("::1"), netip.MustParseAddr("::2")
	hdr := v2(cmdProxy, 0x12, block4())
	tests := []struct {
		name    string
		peer    netip.Addr
		in      []byte
		payload string
		err     error
	}{
		{"trusted", trusted, append(hdr, "dns?"...), "dns?", nil},
		{"trusted empty payload", trusted, hdr, "", nil},
		{"trusted no header", trusted, []byte("dns?"), "", ErrMissing},
		{"trusted truncated", trusted, hdr[:20], "", ErrInvalid},
		{"trusted v1", trusted, []byte("PROXY UNKNOWN\r\n"), "", ErrInvalid},
		{"untrusted plain", untrusted, []byte("dns?"), "dns?", nil},
		{"untrusted prefix is data", untrusted, sigV2[:4], string(sigV2[:4]), nil},
		{"untrusted header", untrusted, hdr, "", ErrUntrusted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h Header
			got, err := p.Datagram(tc.peer, tc.in, &h)
			if !errors.Is(err, tc.err) || (err != nil) != (tc.err != nil) {
				t.Fatalf("Datagram = %q, %v; want error %v", got, err, tc.err)
			}
			if string(got) != tc.payload {
				t.Errorf("payload = %q, want %q", got, tc.payload)
			}
		})
	}
}

func TestVersionsText(t *testing.T) {
	for _, v := range []Versions{V1, V2, Any} {
		var got Versions
		if err := got.UnmarshalText([]byte(v.String())); err != nil || got != v {
			t.Errorf("%v: round trip gave %v, %v", v, got, err)
		}
	}
	var v Versions
	if err := v.UnmarshalText([]byte("v3")); err == nil {
		t.Error("v3 accepted")
	}
}
