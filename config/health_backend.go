package config

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/BurntSushi/toml"
)

// backendHealth reads the keys of backend entry t that health checking
// adds, and its [health] override table, if any. b.Address is set if valid.
func (d *decoder) backendHealth(t *table, i int, ph *Health, b *Backend) {
	t.boolean("backup", &b.Backup)
	t.text("state", &b.State)
	if ph != nil {
		h := *ph
		b.Health = &h
	}
	if !t.has("health") {
		d.checkAddress(b, netip.AddrPort{})
		return
	}
	v, _ := t.value("health")
	var keys map[string]toml.Primitive
	if _, isMap := v.(map[string]any); !isMap || d.md.PrimitiveDecode(t.keys["health"], &keys) != nil {
		t.errorf("health", "must be a table, not %s", typeName(v))
		return
	}
	if ph == nil {
		t.errorf("health", "overrides nothing: the pool has no [%s.health] table", strings.TrimSuffix(t.path, fmt.Sprintf(".backends[%d]", i)))
		return
	}
	ht := &table{d: d, name: "health", path: t.key("health"), keys: keys, node: t.node.key("health")}
	ht.allow(healthKeys(true)...)
	if ht.has("kind") {
		ht.errorf("kind", "cannot be set per backend: a pool's backends are checked alike")
	}
	if ht.has("address") && ht.has("port") {
		ht.errorf("port", "give address or port, not both")
	}
	ht.healthValues(b.Health)
	var override netip.AddrPort
	if s, ok := ht.str("address"); ok {
		a, err := parseAddrPort(s, false)
		if err != nil {
			ht.errorf("address", "%v", err)
		}
		override = a
	}
	d.checkAddress(b, override)
}

// checkAddress sets where b is checked: override if valid, else its
// address with the check's port.
func (d *decoder) checkAddress(b *Backend, override netip.AddrPort) {
	switch {
	case b.Health == nil:
	case override.IsValid():
		b.Health.Address = override
	case b.Address.IsValid() && b.Health.Port != 0:
		b.Health.Address = netip.AddrPortFrom(b.Address.Addr(), b.Health.Port)
	default:
		b.Health.Address = b.Address
	}
}
