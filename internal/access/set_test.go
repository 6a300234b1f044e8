package access

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

func prefixList(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func TestACL(t *testing.T) {
	tests := []struct {
		name        string
		allow, deny []string
		addr        string
		want        bool
	}{
		{"no lists", nil, nil, "192.0.2.1", true},
		{"allowed", []string{"192.0.2.0/24"}, nil, "192.0.2.1", true},
		{"not allowed", []string{"192.0.2.0/24"}, nil, "198.51.100.1", false},
		{"deny only", nil, []string{"192.0.2.0/24"}, "192.0.2.1", false},
		{"deny only, other", nil, []string{"192.0.2.0/24"}, "198.51.100.1", true},
		{"deny wins over a longer allow", []string{"192.0.2.7/32"}, []string{"192.0.2.0/24"}, "192.0.2.7", false},
		{"deny wins over a shorter allow", []string{"0.0.0.0/0"}, []string{"192.0.2.7/32"}, "192.0.2.7", false},
		{"mapped client", []string{"192.0.2.0/24"}, nil, "::ffff:192.0.2.1", true},
		{"mapped deny", nil, []string{"192.0.2.0/24"}, "::ffff:192.0.2.1", false},
		{"mapped prefix", []string{"::ffff:192.0.2.0/120"}, nil, "192.0.2.1", true},
		{"ipv6", []string{"2001:db8::/32"}, nil, "2001:db8::1", true},
		{"ipv6 outside", []string{"2001:db8::/32"}, nil, "2001:db9::1", false},
		{"ipv4 list, ipv6 client", []string{"0.0.0.0/0"}, nil, "2001:db8::1", false},
		{"zone ignored", []string{"fe80::/10"}, nil, "fe80::1%eth0", true},
		{"unmasked prefix", []string{"192.0.2.77/24"}, nil, "192.0.2.1", true},
		{"host route", []string{"192.0.2.1/32"}, nil, "192.0.2.2", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			acl := NewACL(prefixList(tc.allow...), prefixList(tc.deny...))
			if got := acl.Allowed(netip.MustParseAddr(tc.addr)); got != tc.want {
				t.Errorf("Allowed(%s) = %v, want %v", tc.addr, got, tc.want)
			}
		})
	}
}

func TestNilSets(t *testing.T) {
	var s *Set
	if s.Contains(netip.MustParseAddr("::1")) || s.Len() != 0 {
		t.Error("nil set is not empty")
	}
	if NewACL(nil, nil) != nil {
		t.Error("an ACL without lists is not nil, so it costs a lookup")
	}
}

// TestSetAgainstScan checks the trie against a linear scan of random
// prefixes, hit and miss.
func TestSetAgainstScan(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 9))
	ps := randomPrefixes(r, 2000)
	s := NewSet(ps)
	probes := randomAddrs(r, 5000)
	for i := range 2000 {
		probes = append(probes, ps[i].Addr()) // inside, at least in its own prefix
	}
	for _, a := range probes {
		want := false
		for _, p := range ps {
			if p.Contains(a) {
				want = true
				break
			}
		}
		if got := s.Contains(a); got != want {
			t.Fatalf("Contains(%s) = %v, a scan says %v", a, got, want)
		}
	}
}

// randomPrefixes returns n prefixes, three IPv4 (/12 to /32) to one IPv6
// (/32 to /128, under 2000::/8 so that some nest).
func randomPrefixes(r *rand.Rand, n int) []netip.Prefix {
	addrs := randomAddrs(r, n)
	out := make([]netip.Prefix, n)
	for i, a := range addrs {
		if a.Is4() {
			out[i] = netip.PrefixFrom(a, 12+r.IntN(21)).Masked()
		} else {
			out[i] = netip.PrefixFrom(a, 32+r.IntN(97)).Masked()
		}
	}
	return out
}

func randomAddrs(r *rand.Rand, n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		var b [16]byte
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		if i%4 == 3 {
			b[0] = 0x20
			out[i] = netip.AddrFrom16(b)
		} else {
			out[i] = netip.AddrFrom4([4]byte(b[:4]))
		}
	}
	return out
}
