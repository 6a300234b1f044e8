package access

import (
	"net/netip"

	"github.com/gaissmai/bart"
)

// Set is an immutable set of address prefixes. Contains costs O(prefix
// length) whatever the number of prefixes: it walks a multibit trie
// (gaissmai/bart's Lite), at most 4 strides for IPv4 and 16 for IPv6, and
// takes no lock, so any number of goroutines may ask at once. A nil *Set
// is empty.
type Set struct {
	trie bart.Lite
	n    int
}

// NewSet returns the set of addresses in any of prefixes. Prefixes need
// not be masked; IPv4-mapped IPv6 prefixes (::ffff:10.0.0.0/104) are
// taken as the IPv4 prefixes they stand for, since Contains compares IPv4
// clients in their plain form.
func NewSet(prefixes []netip.Prefix) *Set {
	s := &Set{n: len(prefixes)}
	for _, p := range prefixes {
		s.trie.Insert(unmapPrefix(p).Masked())
	}
	return s
}

// unmapPrefix turns ::ffff:a.b.c.d/n (n >= 96) into a.b.c.d/(n-96).
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

// Contains reports whether addr is in s. An IPv4-mapped address (a
// dual-stack socket reports IPv4 peers so) counts as its IPv4 form; a zone
// is ignored.
func (s *Set) Contains(addr netip.Addr) bool {
	if s == nil || s.n == 0 {
		return false
	}
	// bart compares native forms only (its documentation asks callers
	// to unmap), and a zone is no part of the address to filter on.
	return s.trie.Contains(addr.Unmap().WithZone(""))
}

// Len returns the number of prefixes s was built from.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return s.n
}

// ACL is a listener's allow and deny lists. Deny wins: an address in both
// is refused, whatever the prefix lengths. A nil *ACL allows everyone.
type ACL struct {
	allow, deny *Set
}

// NewACL returns the ACL that lets in an address in allow (or anyone, if
// allow is empty) unless it is in deny. It returns nil when both are
// empty, so a listener without lists pays nothing per connection.
func NewACL(allow, deny []netip.Prefix) *ACL {
	if len(allow) == 0 && len(deny) == 0 {
		return nil
	}
	a := &ACL{deny: NewSet(deny)}
	if len(allow) > 0 {
		a.allow = NewSet(allow)
	}
	return a
}

// Allowed reports whether addr may connect.
func (a *ACL) Allowed(addr netip.Addr) bool {
	if a == nil {
		return true
	}
	if a.deny.Contains(addr) {
		return false
	}
	return a.allow == nil || a.allow.Contains(addr)
}
