package config

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// BGP is the [bgp] table: the routers this host announces its listeners'
// virtual addresses to. Config.BGP is nil without the table.
type BGP struct {
	// LocalAS is this host's AS number, 1 to 4294967295.
	LocalAS uint32
	// RouterID is the BGP identifier, an IPv4 address.
	RouterID netip.Addr
	// WithdrawDelay is how long shutdown waits, once every prefix is
	// withdrawn, for the routers to move new connections to other hosts
	// before the listeners stop accepting and drain; >= 0.
	WithdrawDelay time.Duration
	// Communities ("AS:VALUE") are attached to every announcement, as
	// RFC 1997 values (high 16 bits the AS); nil for none.
	Communities []uint32
	// MED, if HasMED, is attached to every announcement.
	MED    uint32
	HasMED bool
	// Peers are the [[bgp.peers]] entries; there is at least one.
	Peers []BGPPeer
}

// BGPPeer is one [[bgp.peers]] entry.
type BGPPeer struct {
	// Address is the router's address.
	Address netip.Addr
	// Port is its BGP port, 179 unless set.
	Port uint16
	// AS is its AS number (equal to LocalAS for iBGP).
	AS uint32
	// Password, if not empty, signs the session with TCP MD5, from
	// password or read from password_file.
	Password string
	// HoldTime is the hold time offered: 3 s to 65535 s, whole seconds.
	HoldTime time.Duration
	// ConnectRetry is the wait between connection attempts while the
	// session is down; whole seconds, > 0.
	ConnectRetry time.Duration
}

var (
	bgpKeys     = []string{"local_as", "router_id", "withdraw_delay", "communities", "med", "peers"}
	bgpPeerKeys = []string{"address", "port", "as", "password", "password_file", "hold_time", "connect_retry"}
)

// bgp reads the [bgp] table, if there is one.
func (d *decoder) bgp(top *table) *BGP {
	t := top.table("bgp")
	if t == nil {
		return nil
	}
	b := &BGP{WithdrawDelay: defaultWithdrawDelay}
	t.allow(bgpKeys...)
	t.required("local_as", "router_id", "peers")
	b.LocalAS = t.asNumber("local_as")
	if s, ok := t.str("router_id"); ok {
		if a, err := netip.ParseAddr(s); err != nil || !a.Is4() {
			t.errorf("router_id", "%s: want an IPv4 address, such as this host's own", quote(s))
		} else {
			b.RouterID = a
		}
	}
	t.duration("withdraw_delay", &b.WithdrawDelay, false)
	b.Communities = t.communities("communities")
	var med int
	if b.HasMED = t.integer("med", 0, math.MaxUint32, &med); b.HasMED {
		b.MED = uint32(med)
	}
	b.Peers = d.bgpPeers(t)
	return b
}

func (d *decoder) bgpPeers(bt *table) []BGPPeer {
	prim, ok := bt.keys["peers"]
	if !ok {
		return nil
	}
	entries, ok := tableArray(&d.md, prim)
	if !ok || len(entries) == 0 {
		bt.errorf("peers", "must be an array of tables, such as [[bgp.peers]], with at least one")
		return nil
	}
	out := make([]BGPPeer, len(entries))
	seen := map[netip.Addr]int{}
	for i, keys := range entries {
		t := &table{d: d, path: fmt.Sprintf("bgp.peers[%d]", i), keys: keys, node: bt.node.key("peers").elem(i)}
		p := &out[i]
		*p = BGPPeer{Port: defaultBGPPort, HoldTime: defaultBGPHoldTime, ConnectRetry: defaultBGPConnectRetry}
		t.allow(bgpPeerKeys...)
		t.required("address", "as")
		if s, ok := t.str("address"); ok {
			a, err := netip.ParseAddr(s)
			switch {
			case err != nil || a.Zone() != "":
				t.errorf("address", "%s: want an IP address", quote(s))
			case seen[a] > 0:
				t.errorf("address", "%s is already bgp.peers[%d]", a, seen[a]-1)
			default:
				seen[a] = i + 1
				p.Address = a
			}
		}
		var port int
		if t.integer("port", 1, math.MaxUint16, &port) {
			p.Port = uint16(port)
		}
		p.AS = t.asNumber("as")
		d.bgpPassword(t, p)
		t.wholeSeconds("hold_time", &p.HoldTime, minBGPHoldTime, maxBGPHoldTime)
		t.wholeSeconds("connect_retry", &p.ConnectRetry, time.Second, maxBGPHoldTime)
	}
	return out
}

func (d *decoder) bgpPassword(t *table, p *BGPPeer) {
	if t.has("password") && t.has("password_file") {
		t.errorf("password_file", "give password or password_file, not both")
	}
	if s, ok := t.str("password"); ok {
		p.Password = s
	}
	if s, ok := t.str("password_file"); ok {
		pw, err := readSecret(d.path(s))
		if err != nil {
			t.errorf("password_file", "%v", err)
		}
		p.Password = pw
	}
	// TCP_MD5SIG_MAXKEYLEN.
	if len(p.Password) > 80 {
		t.errorf("password", "is %d bytes: TCP MD5 keys are at most 80", len(p.Password))
	}
}

// asNumber reads an AS number, 1 to 4294967295 (RFC 6793).
func (t *table) asNumber(k string) uint32 {
	var n int
	if !t.integer(k, 1, math.MaxUint32, &n) {
		return 0
	}
	return uint32(n)
}

// wholeSeconds reads a duration in whole seconds within lo..hi.
func (t *table) wholeSeconds(k string, dst *time.Duration, lo, hi time.Duration) {
	var d time.Duration
	t.duration(k, &d, true)
	switch {
	case d == 0:
	case d%time.Second != 0:
		t.errorf(k, "must be whole seconds, not %v", d)
	case d < lo || d > hi:
		t.errorf(k, "must be %v..%v, not %v", lo, hi, d)
	default:
		*dst = d
	}
}

// communities reads an array of "AS:VALUE" strings.
func (t *table) communities(k string) []uint32 {
	v, ok := t.value(k)
	if !ok {
		return nil
	}
	items, ok := v.([]any)
	if !ok {
		t.errorf(k, "must be an array of \"AS:VALUE\" strings, such as [\"65001:100\"], not %s", typeName(v))
		return nil
	}
	var out []uint32
	for i, item := range items {
		s, _ := item.(string)
		c, ok := parseCommunity(s)
		if !ok {
			t.errorf(k, "entry %d: %s: want \"AS:VALUE\", each 0..65535", i, quote(fmt.Sprint(item)))
			continue
		}
		out = append(out, c)
	}
	return out
}

func parseCommunity(s string) (uint32, bool) {
	hi, lo, ok := strings.Cut(s, ":")
	if !ok {
		return 0, false
	}
	a, err1 := strconv.ParseUint(hi, 10, 16)
	b, err2 := strconv.ParseUint(lo, 10, 16)
	return uint32(a)<<16 | uint32(b), err1 == nil && err2 == nil
}

// announce reads a listener's announce key: the prefixes (usually one
// /32 or /128, the virtual address) announced over BGP while the listener
// can serve. A listener bound to one address must be inside them, or the
// routers would send its traffic elsewhere.
func (d *decoder) announce(t *table, l *Listener) {
	if !t.has("announce") {
		return
	}
	if !d.hasBGP {
		t.errorf("announce", "needs a [bgp] table with the routers to announce to")
	}
	l.Announce = t.prefixes("announce")
	a := l.Bind.Addr()
	if !a.IsValid() || a.IsUnspecified() {
		return
	}
	for _, p := range l.Announce {
		if p.Contains(a.Unmap()) {
			return
		}
	}
	if len(l.Announce) > 0 {
		t.errorf("announce", "no prefix contains the listener's bind address %s: announce it, or bind to the virtual address", a)
	}
}

// bgpWarnings warns of a [bgp] that announces nothing, and of IPv6
// prefixes with no IPv6 session to carry them (their next hop is the
// session's own address, so an IPv4 session cannot give them one).
func (d *decoder) bgpWarnings(top *table, cfg *Config) {
	if cfg.BGP == nil {
		return
	}
	var any4, any6 bool
	for _, l := range cfg.Listeners {
		for _, p := range l.Announce {
			any4 = any4 || p.Addr().Is4()
			any6 = any6 || p.Addr().Is6()
		}
	}
	var peer6 bool
	for _, p := range cfg.BGP.Peers {
		peer6 = peer6 || p.Address.Is6()
	}
	line := top.node.key("bgp").lineNo()
	warn := func(msg string) {
		d.warnings = append(d.warnings, &Error{File: d.file, Line: line, Key: "bgp", Msg: msg})
	}
	switch {
	case !any4 && !any6:
		warn("no listener has announce: nothing will be announced")
	case any6 && !peer6:
		warn("IPv6 prefixes are announced but no peer has an IPv6 address: they need an IPv6 session for their next hop")
	}
}
