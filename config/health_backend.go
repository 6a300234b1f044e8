package config

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/BurntSushi/toml"
)

// backendHealth reads the keys of backend entry t that health checking
// adds, and its [health] override table, if any; lines finds the override's
// key lines. b.Address is set if valid.
func (d *decoder) backendHealth(t *table, lines *entryLines, i int, ph *Health, b *Backend) {
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
	ht := &table{d: d, name: "health", path: t.key("health"), keys: keys, line: lines.key(i, "health"),
		lineOf: func(k string) int { return lines.subKey(i, "health", k) }}
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

// subKey returns the line of key k in the sub-table sub of entry i (such
// as [pools.db.backends.health]), or 0 when it cannot be known, as key does
// for the entry's own keys.
func (e *entryLines) subKey(i int, sub, k string) int {
	p, ok := subPrim(&e.d.md, e.entries[i], sub, k)
	if !ok {
		return e.key(i, sub)
	}
	later := false
	for _, m := range e.entries[i+1:] {
		if _, ok := subPrim(&e.d.md, m, sub, k); ok {
			later = true
		}
	}
	if !later {
		return probeLine(&e.d.md, p, e.d.text)
	}
	c, ok := e.cut(i)
	if !ok {
		return 0
	}
	if p, ok = subPrim(c.md, c.entries[i], sub, k); !ok {
		return 0
	}
	return probeLine(c.md, p, e.d.text)
}

// subPrim returns entry[sub][k].
func subPrim(md *toml.MetaData, entry map[string]toml.Primitive, sub, k string) (toml.Primitive, bool) {
	p, ok := entry[sub]
	if !ok {
		return toml.Primitive{}, false
	}
	var m map[string]toml.Primitive
	if md.PrimitiveDecode(p, &m) != nil {
		return toml.Primitive{}, false
	}
	v, ok := m[k]
	return v, ok
}
