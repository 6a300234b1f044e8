package config

import (
	"fmt"
	"net/netip"
	"strings"

	"sluice/internal/proxyheader"
)

// clientKeys reads a listener's keys about its clients: PROXY headers in,
// allow and deny lists, per-client limits.
func (t *table) clientKeys(l *Listener) {
	if t.text("proxy_protocol", &l.ProxyProtocol) {
		switch {
		case l.Protocol == UDP && l.ProxyProtocol != proxyheader.V2:
			t.errorf("proxy_protocol", "UDP carries only v2 PROXY headers: want \"v2\", not %q", l.ProxyProtocol)
		case !t.has("proxy_protocol_from"):
			t.errorf("proxy_protocol", "needs proxy_protocol_from, the addresses of the proxies "+
				"trusted to send headers (anyone else could claim any client address)")
		}
	}
	for _, k := range []string{"proxy_protocol_from", "proxy_protocol_timeout"} {
		if t.has(k) && !t.has("proxy_protocol") {
			t.errorf(k, "applies only with proxy_protocol set")
		}
	}
	l.ProxyProtocolFrom = t.prefixes("proxy_protocol_from")
	if l.ProxyProtocol != 0 && l.Protocol == TCP {
		l.ProxyProtocolTimeout = defaultProxyProtocolTimeout
		t.duration("proxy_protocol_timeout", &l.ProxyProtocolTimeout, true)
	}
	l.Allow = t.prefixes("allow")
	l.Deny = t.prefixes("deny")
	if l.Protocol == TCP {
		t.integer("max_connections_per_client", 0, maxConnsPerClient, &l.MaxConnectionsPerClient)
	}
	t.text("new_connections_per_client", &l.NewConnectionsPerClient)
}

// prefixes reads k as an array of CIDRs ("10.0.0.0/8") or bare addresses
// (one host); nil if k is absent or wrong, which is then reported.
func (t *table) prefixes(k string) []netip.Prefix {
	v, ok := t.value(k)
	if !ok {
		return nil
	}
	items, ok := v.([]any)
	if !ok {
		t.errorf(k, "must be an array of CIDRs, such as [\"10.0.0.0/8\", \"2001:db8::/32\"], not %s", typeName(v))
		return nil
	}
	if len(items) == 0 {
		t.errorf(k, "is empty: list at least one CIDR, or leave the key out")
		return nil
	}
	out := make([]netip.Prefix, 0, len(items))
	for i, item := range items {
		s, isStr := item.(string)
		if !isStr {
			t.errorf(k, "entry %d must be a string, not %s", i, typeName(item))
			continue
		}
		p, err := parsePrefix(s)
		if err != nil {
			t.errorf(k, "entry %d: %v", i, err)
			continue
		}
		out = append(out, p)
	}
	if len(out) < len(items) {
		return nil
	}
	return out
}

// parsePrefix parses a CIDR, or a bare address as the prefix of that one
// address. Host bits must be zero: "10.0.0.1/8" is more likely a typo
// than a way to write 10.0.0.0/8.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: want a CIDR, such as \"10.0.0.0/8\", or an IP address", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q: want a CIDR, such as \"10.0.0.0/8\" or \"2001:db8::/32\"", s)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set: did you mean %q?", s, m.String())
	}
	return p, nil
}

// sendProxy reads a pool's send_proxy key: "v1" or "v2", not "any".
func (t *table) sendProxy(p *Pool) {
	if t.text("send_proxy", &p.SendProxy) && p.SendProxy == proxyheader.Any {
		t.errorf("send_proxy", "a pool sends one version: want \"v1\" or \"v2\", not \"any\"")
		p.SendProxy = 0
	}
}
