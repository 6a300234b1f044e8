package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"sluice/internal/discover"
)

// Discover is a pool's [pools.NAME.discover] table: its backends come
// from DNS, not from [[backends]] entries, and follow the records while
// sluice runs.
type Discover struct {
	// SRV is an SRV name whose records give the backends, with their
	// ports and weights; set unless Host is.
	SRV string
	// Host is a name whose A and AAAA records give the backends' addresses,
	// each at Port; set unless SRV is.
	Host string
	// Port is the backends' port with Host, 1 to 65535.
	Port uint16
	// Resolver is the DNS server asked; the zero value means the first
	// nameserver of /etc/resolv.conf.
	Resolver netip.AddrPort
	// Interval is the longest time between resolutions; a shorter TTL
	// brings the next one forward. At least discover.MinInterval.
	Interval time.Duration
}

// discoverKeys are the keys of a discover table, in the order errors
// list them.
var discoverKeys = []string{"srv", "host", "resolver", "interval"}

// discover reads pool table t's [discover] table, which replaces its
// backends, or returns nil if it has none.
func (t *table) discover() *Discover {
	if !t.has("discover") {
		return nil
	}
	if t.has("backends") {
		t.errorf("backends", "give backends or a discover table, not both")
	}
	dt := t.table("discover")
	if dt == nil {
		return nil
	}
	d := &Discover{Interval: discover.DefaultInterval}
	dt.allow(discoverKeys...)
	switch {
	case dt.has("srv") && dt.has("host"):
		dt.errorf("host", "give srv or host, not both")
	case !dt.has("srv") && !dt.has("host"):
		dt.errorf("srv", "required key is missing: give srv (SRV records) or host (A and AAAA records, with a port)")
	}
	if s, ok := dt.str("srv"); ok {
		if err := checkDNSName(s); err != nil {
			dt.errorf("srv", "%v", err)
		}
		d.SRV = s
	}
	if s, ok := dt.str("host"); ok {
		d.Host, d.Port = dt.discoverHost(s)
	}
	if s, ok := dt.str("resolver"); ok {
		a, err := parseResolver(s)
		if err != nil {
			dt.errorf("resolver", "%v", err)
		}
		d.Resolver = a
	}
	dt.duration("interval", &d.Interval, true)
	if d.Interval < discover.MinInterval {
		dt.errorf("interval", "must be at least %v, not %v", discover.MinInterval, d.Interval)
	}
	return d
}

// discoverHost reads "NAME:PORT".
func (t *table) discoverHost(s string) (string, uint16) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		t.errorf("host", "%q: want NAME:PORT, such as \"db.internal:5432\"", s)
		return "", 0
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		t.errorf("host", "%q: port %q: want 1..65535", s, port)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		t.errorf("host", "%q is an address: list it as a backend instead", s)
		return "", 0
	}
	if err := checkDNSName(host); err != nil {
		t.errorf("host", "%v", err)
	}
	return host, uint16(p)
}

// checkDNSName refuses a name no DNS query can carry.
func checkDNSName(name string) error {
	trimmed := strings.TrimSuffix(name, ".")
	if trimmed == "" || strings.Contains(trimmed, "..") {
		return fmt.Errorf("%q is not a DNS name", name)
	}
	for label := range strings.SplitSeq(trimmed, ".") {
		if len(label) > 63 {
			return fmt.Errorf("%q: labels must be at most 63 bytes", name)
		}
	}
	if _, err := dnsmessage.NewName(trimmed + "."); err != nil {
		return fmt.Errorf("%q: longer than a DNS name may be", name)
	}
	return nil
}

// parseResolver reads "IP:PORT", or an IP alone meaning port 53.
func parseResolver(s string) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a.Unmap(), 53), nil
	}
	return parseAddrPort(s, false)
}

// DiscoveredHealth returns how a backend that p's discovery found at addr
// is checked: p's [health] table, at addr or at its port, as a backend
// listed in the file without overrides would be; nil if p has no checks.
func (p *Pool) DiscoveredHealth(addr netip.AddrPort) *Health {
	if p.Health == nil {
		return nil
	}
	h := *p.Health
	h.Address = addr
	if h.Port != 0 {
		h.Address = netip.AddrPortFrom(addr.Addr(), h.Port)
	}
	return &h
}
