package maglev

import (
	"encoding/binary"
	"hash/fnv"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"testing"
)

// TestGolden pins the hashes, and the backend they choose, for fixed
// clients over fixed backends. Every sluice instance in front of the same
// backends must send a client to the same backend, whatever its version,
// architecture or start time, so these values must never change: a failure
// here means a hash, a salt, the fill order or the slot mapping changed,
// which would reshuffle clients across a fleet mid-upgrade. The values were
// computed once with this code and committed; do not regenerate them to make
// the test pass without deciding that such a reshuffle is acceptable.
func TestGolden(t *testing.T) {
	ids := []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "[2001:db8::1]:443", "backend-e"}
	weights := []int{1, 2, 3, 1, 1}
	tests := []struct {
		client             string
		hashIP, hashIPPort uint64
		byIP, byIPPort     string
	}{
		{"192.0.2.1:1234", 0x369670a1d918bebb, 0x3e8453a415ad1d06, "10.0.0.2:80", "10.0.0.3:80"},
		{"192.0.2.2:1234", 0x7c65de92b1c0f9d7, 0x1237c8077724716d, "10.0.0.2:80", "10.0.0.2:80"},
		{"198.51.100.7:40000", 0xec28e0e7539f998c, 0x1e9fceab8488fee6, "10.0.0.3:80", "10.0.0.3:80"},
		{"203.0.113.200:5353", 0x3d9dba8f4425c3d, 0xd843d89aff9ba9b6, "10.0.0.3:80", "10.0.0.3:80"},
		{"[2001:db8::42]:443", 0xbdd418c8f337de72, 0xa1a892c584e07b69, "10.0.0.2:80", "10.0.0.1:80"},
		{"[2001:db8::43]:443", 0xeac0c59152b1cd7b, 0xe2dfe9c57450e133, "10.0.0.3:80", "10.0.0.2:80"},
		{"10.1.2.3:0", 0xca32b182357c9517, 0x2b909afa46e1ca1c, "10.0.0.3:80", "[2001:db8::1]:443"},
		{"10.1.2.4:0", 0x8da14ce635dbc03e, 0xa52ec8605898d240, "10.0.0.2:80", "10.0.0.1:80"},
		{"172.16.0.1:65535", 0xe6e8d2591bd12b32, 0xe431e4cecbdcd95d, "10.0.0.2:80", "10.0.0.3:80"},
		// A dual-stack listener reports IPv4 clients in the mapped form.
		{"[::ffff:192.0.2.1]:1234", 0x369670a1d918bebb, 0x3e8453a415ad1d06, "10.0.0.2:80", "10.0.0.3:80"},
	}
	tb := mustNew(t, ids, weights, DefaultSize)
	for _, tt := range tests {
		a := netip.MustParseAddrPort(tt.client)
		if got := HashAddr(a, false); got != tt.hashIP {
			t.Errorf("HashAddr(%s, false) = %#x, want %#x", a, got, tt.hashIP)
		}
		if got := HashAddr(a, true); got != tt.hashIPPort {
			t.Errorf("HashAddr(%s, true) = %#x, want %#x", a, got, tt.hashIPPort)
		}
		if got := ids[tb.Lookup(tt.hashIP)]; got != tt.byIP {
			t.Errorf("%s by IP goes to %s, want %s", a, got, tt.byIP)
		}
		if got := ids[tb.Lookup(tt.hashIPPort)]; got != tt.byIPPort {
			t.Errorf("%s by IP and port goes to %s, want %s", a, got, tt.byIPPort)
		}
	}
	// The whole table, fingerprinted, so a change in any slot shows.
	h := fnv.New64a()
	for _, e := range tb.entries {
		h.Write(binary.BigEndian.AppendUint16(nil, e))
	}
	if got, want := h.Sum64(), uint64(0xc19f0ef4b502140d); got != want {
		t.Errorf("table fingerprint = %#x, want %#x", got, want)
	}
}

// TestAvalanche checks that flipping any input bit of HashAddr flips each
// output bit about half the time: Lookup uses the hash's high bits and
// clients often differ only in their last octet or port.
func TestAvalanche(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 5))
	const trials = 2000
	for bit := range 16*8 + 16 {
		var flips [64]int
		for range trials {
			var ip [16]byte
			binary.BigEndian.PutUint64(ip[:8], r.Uint64())
			binary.BigEndian.PutUint64(ip[8:], r.Uint64())
			port := uint16(r.Uint32())
			a := netip.AddrPortFrom(netip.AddrFrom16(ip), port)
			if bit < 128 {
				ip[bit/8] ^= 1 << (bit % 8)
			} else {
				port ^= 1 << (bit - 128)
			}
			b := netip.AddrPortFrom(netip.AddrFrom16(ip), port)
			d := HashAddr(a, true) ^ HashAddr(b, true)
			for o := range 64 {
				flips[o] += int(d >> o & 1)
			}
		}
		for o, f := range flips {
			// Binomial(2000, 0.5) has sd 22; 0.4-0.6 is 9 sd out.
			if f < trials*4/10 || f > trials*6/10 {
				t.Errorf("input bit %d flips output bit %d in %d of %d trials", bit, o, f, trials)
			}
		}
	}
}

func TestHashAddrPort(t *testing.T) {
	a := netip.MustParseAddrPort("192.0.2.1:1000")
	b := netip.MustParseAddrPort("192.0.2.1:1001")
	if HashAddr(a, false) != HashAddr(b, false) {
		t.Error("without the port, two ports of one IP hash differently")
	}
	if HashAddr(a, true) == HashAddr(b, true) {
		t.Error("with the port, two ports of one IP hash alike")
	}
	// The zone says which interface, not which client.
	z := netip.MustParseAddrPort("[fe80::1%eth0]:1")
	if HashAddr(z, true) != HashAddr(netip.MustParseAddrPort("[fe80::1]:1"), true) {
		t.Error("the zone changes the hash")
	}
	if bits.OnesCount64(HashAddr(netip.AddrPort{}, false)) == 0 {
		t.Error("the zero address hashes to 0")
	}
}

func TestLookupAllocs(t *testing.T) {
	tb := mustNew(t, backendIDs(10), ones(10), DefaultSize)
	a := netip.MustParseAddrPort("[2001:db8::42]:443")
	if n := testing.AllocsPerRun(100, func() { _ = tb.Lookup(HashAddr(a, true)) }); n != 0 {
		t.Errorf("Lookup(HashAddr) allocates %v times", n)
	}
}

func BenchmarkNew(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		ids, weights := backendIDs(n), make([]int, n)
		for i := range weights {
			weights[i] = i%3 + 1
		}
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := New(ids, weights, DefaultSize); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkLookup(b *testing.B) {
	tb := mustNew(b, backendIDs(100), ones(100), DefaultSize)
	a := netip.MustParseAddrPort("[2001:db8::42]:443")
	b.ReportAllocs()
	sink := 0
	for b.Loop() {
		sink += tb.Lookup(HashAddr(a, true))
		a = netip.AddrPortFrom(a.Addr(), a.Port()+1)
	}
	_ = sink
}
