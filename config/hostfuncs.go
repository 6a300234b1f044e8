package config

import (
	"strings"
	"text/template"

	sockaddr "github.com/hashicorp/go-sockaddr"
)

// funcs replaces the go-sockaddr template functions that read the host's
// interfaces themselves (go-sockaddr's own ignore the list a template runs
// with, so template.ParseIfAddrs cannot be given a fake host) with ones
// reading h. Each follows the go-sockaddr function of the same name.
func (h hostAddrs) funcs() template.FuncMap {
	return template.FuncMap{
		"GetAllInterfaces":     func() sockaddr.IfAddrs { return h.ifs },
		"GetDefaultInterfaces": h.defaultIfs,
		"GetPrivateInterfaces": func() (sockaddr.IfAddrs, error) { return h.routable(true) },
		"GetPublicInterfaces":  func() (sockaddr.IfAddrs, error) { return h.routable(false) },
		"GetPrivateIP":         func() (string, error) { return firstIP(h.routable(true)) },
		"GetPublicIP":          func() (string, error) { return firstIP(h.routable(false)) },
		"GetPrivateIPs":        func() (string, error) { return h.allIPs(true) },
		"GetPublicIPs":         func() (string, error) { return h.allIPs(false) },
		"GetInterfaceIP":       func(re string) (string, error) { return firstIP(h.named(re, true)) },
		"GetInterfaceIPs":      func(re string) (string, error) { return joinIPs(h.named(re, false)) },
	}
}

// defaultIfs returns the addresses on the default route's interface.
func (h hostAddrs) defaultIfs() sockaddr.IfAddrs {
	var out sockaddr.IfAddrs
	for _, a := range h.ifs {
		if h.defaultIf != "" && a.Name == h.defaultIf {
			out = append(out, a)
		}
	}
	return out
}

// routable returns the up, forwardable IP addresses inside RFC 6890's
// special-purpose blocks (private) or outside them (public), those on the
// default interface first, then IPv4 before IPv6, then larger networks.
func (h hostAddrs) routable(private bool) (sockaddr.IfAddrs, error) {
	ifs, _ := sockaddr.FilterIfByType(h.ifs, sockaddr.TypeIP)
	ifs, _, err := sockaddr.IfByFlag("forwardable", ifs)
	if err != nil {
		return nil, err
	}
	if ifs, _, err = sockaddr.IfByFlag("up", ifs); err != nil {
		return nil, err
	}
	sockaddr.OrderedIfAddrBy(h.defaultFirst, sockaddr.AscIfType, sockaddr.AscIfNetworkSize).Sort(ifs)
	in, out, err := sockaddr.IfByRFC("6890", ifs)
	if private {
		return in, err
	}
	return out, err
}

// allIPs lists every private (RFC 6890, forwardable) or public IP address
// on any interface, up or not, IPv4 first, then larger networks.
func (h hostAddrs) allIPs(private bool) (string, error) {
	ifs, _ := sockaddr.FilterIfByType(h.ifs, sockaddr.TypeIP)
	sockaddr.OrderedIfAddrBy(sockaddr.AscIfType, sockaddr.AscIfNetworkSize).Sort(ifs)
	in, out, err := sockaddr.IfByRFC("6890", ifs)
	if err != nil || !private {
		return joinIPs(out, err)
	}
	_, in, err = sockaddr.IfByRFC(sockaddr.ForwardingBlacklistRFC, in)
	return joinIPs(in, err)
}

// named returns the addresses on interfaces whose name matches re,
// IPv4 first, then larger networks; only forwardable ones if forwardable.
func (h hostAddrs) named(re string, forwardable bool) (sockaddr.IfAddrs, error) {
	ifs, _, err := sockaddr.IfByName(re, h.ifs)
	if err != nil {
		return nil, err
	}
	if forwardable {
		if ifs, _, err = sockaddr.IfByFlag("forwardable", ifs); err != nil {
			return nil, err
		}
	}
	return sockaddr.SortIfBy("+type,+size", ifs)
}

// defaultFirst orders addresses on the default interface first.
func (h hostAddrs) defaultFirst(a, b *sockaddr.IfAddr) int {
	da, db := h.defaultIf != "" && a.Name == h.defaultIf, h.defaultIf != "" && b.Name == h.defaultIf
	switch {
	case da == db:
		return 0
	case da:
		return -1
	}
	return 1
}

func firstIP(ifs sockaddr.IfAddrs, err error) (string, error) {
	if err != nil || len(ifs) == 0 {
		return "", err
	}
	if ip := sockaddr.ToIPAddr(ifs[0].SockAddr); ip != nil {
		return (*ip).NetIP().String(), nil
	}
	return "", nil
}

func joinIPs(ifs sockaddr.IfAddrs, err error) (string, error) {
	if err != nil {
		return "", err
	}
	ips := make([]string, 0, len(ifs))
	for _, a := range ifs {
		if ip := sockaddr.ToIPAddr(a.SockAddr); ip != nil {
			ips = append(ips, (*ip).NetIP().String())
		}
	}
	return strings.Join(ips, " "), nil
}
