package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// errHostName is the one message for every host name in an address:
// sluice never resolves names at load, so a backend's address cannot drift
// with DNS while it runs.
var errHostName = errors.New("host names are not resolved; give an IP address")

// parseAddrPort parses "IP:PORT", with an IPv6 address in brackets. If
// wildcard is set, ":PORT" means every address and is returned as [::]:PORT.
func parseAddrPort(s string, wildcard bool) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%s: want IP:port, such as \"10.0.0.3:5432\" or \"[::1]:5432\"", quote(s))
	}
	if host == "" {
		if !wildcard {
			return netip.AddrPort{}, fmt.Errorf("%s: missing IP address", quote(s))
		}
		// An unspecified IPv6 socket accepts IPv4 too (IPV6_V6ONLY is off
		// by default on Linux), so [::] is "every address".
		host = "::"
	}
	ap, err := addrPort(host, port)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%s: %w", quote(s), err)
	}
	return ap, nil
}

// addrPort parses a host and port already split apart.
func addrPort(host, port string) (netip.AddrPort, error) {
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return netip.AddrPort{}, fmt.Errorf("port %s: want 1..65535", quote(port))
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		if isHostName(host) {
			return netip.AddrPort{}, errHostName
		}
		return netip.AddrPort{}, fmt.Errorf("invalid IP address %s", quote(host))
	}
	// ::ffff:10.0.0.3 and 10.0.0.3 are one socket address; unmapping
	// makes duplicate and conflict checks see that.
	return netip.AddrPortFrom(addr.Unmap(), uint16(p)), nil
}

// isHostName reports whether s, which is not an IP address, looks like a
// DNS name rather than a mistyped address: it has a letter and no colon.
func isHostName(s string) bool {
	if strings.Contains(s, ":") {
		return false
	}
	return strings.ContainsFunc(s, func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
	})
}

// bindsConflict reports whether two listening sockets of one protocol
// would collide: the same address and port, or the same port where one
// of them is a wildcard (which claims the port on every address).
func bindsConflict(a, b netip.AddrPort) bool {
	if a.Port() != b.Port() {
		return false
	}
	return a.Addr() == b.Addr() || a.Addr().IsUnspecified() || b.Addr().IsUnspecified()
}
