package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"text/template"
	"text/template/parse"

	sockaddr "github.com/hashicorp/go-sockaddr"
	sockaddrtemplate "github.com/hashicorp/go-sockaddr/template"
)

// hostAddrs is what a bind template sees of the host.
type hostAddrs struct {
	ifs       sockaddr.IfAddrs
	defaultIf string // interface holding the default route; "" if unknown
}

// localHost reads this host's interfaces, for templates in real files.
func localHost() (hostAddrs, error) {
	ifs, err := sockaddr.GetAllInterfaces()
	if err != nil {
		return hostAddrs{}, fmt.Errorf("listing network interfaces: %w", err)
	}
	h := hostAddrs{ifs: ifs}
	// go-sockaddr asks `ip route` for the default interface; without it,
	// GetPrivateIP only loses its preference for that interface, as in
	// go-sockaddr itself.
	if ri, err := sockaddr.NewRouteInfo(); err == nil {
		h.defaultIf, _ = ri.GetDefaultInterfaceName()
	}
	return h, nil
}

// isTemplate reports whether a bind is a go-sockaddr template.
func isTemplate(bind string) bool { return strings.Contains(bind, "{{") }

// parseBind parses a listener's bind: "IP:PORT", ":PORT" for every address
// (returned as [::]:PORT), or a go-sockaddr template such as
// "{{ GetPrivateIP }}:5432", resolved against h, that must give exactly
// one IP address and a port.
func parseBind(text string, h hostAddrs) (netip.AddrPort, error) {
	if !isTemplate(text) {
		return parseAddrPort(text, true)
	}
	out, err := execTemplate(text, h)
	if err != nil {
		return netip.AddrPort{}, err
	}
	fields := strings.Fields(out)
	switch {
	case len(fields) == 0:
		return netip.AddrPort{}, fmt.Errorf("template resolved to no address (%s)", quote(out))
	case len(fields) > 1:
		return netip.AddrPort{}, fmt.Errorf("template resolved to %d addresses (%s): want exactly one", len(fields), quote(out))
	}
	s := fields[0]
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// go-sockaddr prints IPv6 addresses without brackets, so
		// '{{ GetInterfaceIP "eth0" }}:5432' can give "fd00::5:5432".
		i := strings.LastIndexByte(s, ':')
		if i < 0 {
			return netip.AddrPort{}, fmt.Errorf("template resolved to %s: want an IP address and a port", quote(s))
		}
		host, port = s[:i], s[i+1:]
	}
	if host == "" {
		// ":5432" written out means every address; a template that gave
		// nothing before the port found no address, which is an error.
		return netip.AddrPort{}, fmt.Errorf("template resolved to no address (%s)", quote(s))
	}
	ap, err := addrPort(host, port)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("template resolved to %s: %w", quote(s), err)
	}
	return ap, nil
}

// execTemplate runs a go-sockaddr template with the dot set to h.ifs.
func execTemplate(text string, h hostAddrs) (string, error) {
	t, err := template.New("bind").Option("missingkey=error").
		Funcs(sockaddrtemplate.SourceFuncs).
		Funcs(sockaddrtemplate.SortFuncs).
		Funcs(sockaddrtemplate.FilterFuncs).
		Funcs(sockaddrtemplate.HelperFuncs).
		Funcs(h.funcs()).
		Parse(text)
	if err != nil {
		return "", fmt.Errorf("parsing template: %w", err)
	}
	for _, tt := range t.Templates() {
		if tt.Tree != nil && !boundedNode(tt.Tree.Root) {
			// {{range 1e12}} or a template calling itself twice would
			// hang the load; neither is needed to pick an address.
			return "", errors.New("parsing template: range and template actions are not allowed")
		}
	}
	var b strings.Builder
	if err := t.Execute(&b, h.ifs); err != nil {
		return "", fmt.Errorf("running template: %w", err)
	}
	return b.String(), nil
}

// boundedNode reports whether a template tree runs in time bounded by its
// size: it has no range and calls no other template.
func boundedNode(n parse.Node) bool {
	switch n := n.(type) {
	case *parse.RangeNode, *parse.TemplateNode, *parse.BreakNode, *parse.ContinueNode:
		return false
	case *parse.ListNode:
		if n == nil {
			return true
		}
		for _, c := range n.Nodes {
			if !boundedNode(c) {
				return false
			}
		}
	case *parse.IfNode:
		return boundedNode(n.List) && boundedNode(n.ElseList)
	case *parse.WithNode:
		return boundedNode(n.List) && boundedNode(n.ElseList)
	}
	return true
}
