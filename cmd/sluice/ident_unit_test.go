package main

import (
	"bytes"
	"net/netip"
	"testing"

	"sluice/internal/access"
	"sluice/internal/proxyheader"
	"sluice/l4"
)

// TestProxyInKeepsItsOwnTLVs checks that the TLVs a client's header
// carried survive the loop's peek buffer being reused, and that a header
// names the client while a LOCAL one keeps the socket's.
func TestProxyInKeepsItsOwnTLVs(t *testing.T) {
	p := &proxyIn{policy: proxyheader.Policy{Accept: proxyheader.Any,
		Trusted: access.NewSet([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})}}
	peer := netip.MustParseAddrPort("10.0.0.1:40000")
	client := netip.MustParseAddrPort("203.0.113.7:5555")
	dst := netip.MustParseAddrPort("192.0.2.1:443")
	tlvs := proxyheader.AppendTLV(nil, proxyheader.TypeAuthority, []byte("example.com"))
	buf := proxyheader.AppendV2(nil, &proxyheader.Header{Source: client, Dest: dst, TLVs: tlvs})
	c := l4.Client{Addr: peer, Local: netip.MustParseAddrPort("10.0.0.2:8443")}
	n, err := p.ParsePreamble(buf, &c)
	if err != nil || n != len(buf) {
		t.Fatalf("ParsePreamble = %d, %v", n, err)
	}
	clear(buf) // the next connection's bytes
	if c.Addr != client || c.Via != peer || c.Local != dst || !bytes.Equal(c.TLVs, tlvs) {
		t.Errorf("client %+v", c)
	}
	local := proxyheader.AppendV2(nil, &proxyheader.Header{Local: true})
	c = l4.Client{Addr: peer}
	if _, err := p.ParsePreamble(local, &c); err != nil || c.Addr != peer || c.Via.IsValid() {
		t.Errorf("LOCAL header: %+v, %v", c, err)
	}
	if _, err := p.ParsePreamble(local[:3], &c); err != l4.ErrNeedMore {
		t.Errorf("a part of a header: %v, want l4.ErrNeedMore", err)
	}
}

// TestProxyOut checks the headers a pool sends: v1 from the client to the
// address it reached; v2 with the received TLVs but their checksum, and a
// unique ID, the received one if any.
func TestProxyOut(t *testing.T) {
	c := &l4.Client{Addr: netip.MustParseAddrPort("203.0.113.7:5555"), Local: netip.MustParseAddrPort("192.0.2.1:443")}
	if got := string(proxyOut{version: proxyheader.V1}.AppendBackendPreamble(nil, c)); got != "PROXY TCP4 203.0.113.7 192.0.2.1 5555 443\r\n" {
		t.Errorf("v1 = %q", got)
	}
	read := func(b []byte) proxyheader.Header {
		t.Helper()
		var h proxyheader.Header
		if n, err := proxyheader.Parse(b, &h); err != nil || n != len(b) {
			t.Fatalf("parsing %q: %d, %v", b, n, err)
		}
		return h
	}
	h := read(proxyOut{version: proxyheader.V2}.AppendBackendPreamble(nil, c))
	id, ok := proxyheader.TLV(h.TLVs, proxyheader.TypeUniqueID)
	if h.Source != c.Addr || h.Dest != c.Local || !ok || len(id) != 32 {
		t.Errorf("v2 = %+v, unique ID %q", h, id)
	}
	other := read(proxyOut{version: proxyheader.V2}.AppendBackendPreamble(nil, c))
	if id2, _ := proxyheader.TLV(other.TLVs, proxyheader.TypeUniqueID); bytes.Equal(id, id2) {
		t.Error("two connections got one unique ID")
	}
	c.TLVs = proxyheader.AppendTLV(proxyheader.AppendTLV(proxyheader.AppendTLV(nil,
		proxyheader.TypeALPN, []byte("h2")), proxyheader.TypeUniqueID, []byte("from-the-edge")),
		proxyheader.TypeCRC32C, []byte{1, 2, 3, 4})
	h = read(proxyOut{version: proxyheader.V2}.AppendBackendPreamble(nil, c))
	want := proxyheader.AppendTLV(proxyheader.AppendTLV(nil,
		proxyheader.TypeALPN, []byte("h2")), proxyheader.TypeUniqueID, []byte("from-the-edge"))
	if !bytes.Equal(h.TLVs, want) {
		t.Errorf("forwarded TLVs %q, want %q", h.TLVs, want)
	}
}
