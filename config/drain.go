package config

import (
	"fmt"

	"sluice/internal/access"
)

// drainRate reads k, a drain rate ("50/s", "600/m"), into dst; "0"
// sets none (everything closed at once), for a pool to undo the
// file's default.
func (t *table) drainRate(k string, dst *access.Rate) {
	s, ok := t.str(k)
	switch {
	case !ok:
	case s == "0":
		*dst = access.Rate{}
	default:
		var r access.Rate
		if err := r.UnmarshalText([]byte(s)); err != nil {
			t.errorf(k, "%v, or \"0\" for none", err)
			return
		}
		*dst = r
	}
}

// poolDrainRate reads pool table t's drain_rate over the file's default,
// and notes where a pool set one itself, for unpacedDrainRates.
func (d *decoder) poolDrainRate(t *table, p *Pool) {
	p.DrainRate = d.drainRate
	if !t.has("drain_rate") {
		return
	}
	t.drainRate("drain_rate", &p.DrainRate)
	if !p.DrainRate.IsZero() {
		d.drainRates = append(d.drainRates, drainRateAt{pool: p.Name, line: t.node.key("drain_rate").lineNo(), key: t.key("drain_rate")})
	}
}

// drainRateAt is where a pool set its own drain_rate.
type drainRateAt struct {
	pool, key string
	line      int
}

// unpacedDrainRates warns of a pool's own drain_rate that no listener
// uses: only TCP listeners pace their drains, over their own pool.
func (d *decoder) unpacedDrainRates(ls []Listener) {
	for _, at := range d.drainRates {
		used := false
		for _, l := range ls {
			used = used || l.Protocol == TCP && l.Pool == at.pool
		}
		if !used {
			d.warnings = append(d.warnings, &Error{File: d.file, Line: at.line, Key: at.key,
				Msg: fmt.Sprintf("no TCP listener uses pool %q: only TCP listeners pace their drains (HTTP and UDP ones close at once)", at.pool)})
		}
	}
}
