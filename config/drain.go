package config

import "sluice/internal/access"

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
