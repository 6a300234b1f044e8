package access

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rate is a number of events per period, written "20/s", "600/m" or
// "1000/h". A client may use the whole allowance at once (the burst is N)
// and gets it back evenly over the period: 600/m is a burst of 600, then
// one every 100 ms. The zero value is no limit.
type Rate struct {
	// N is the events allowed per Per; zero means no limit.
	N int
	// Per is the period.
	Per time.Duration
}

// IsZero reports whether r sets no limit.
func (r Rate) IsZero() bool { return r.N == 0 }

var rateUnits = []struct {
	name string
	d    time.Duration
}{{"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}}

// String returns r as written in the configuration file.
func (r Rate) String() string {
	for _, u := range rateUnits {
		if r.Per == u.d {
			return strconv.Itoa(r.N) + "/" + u.name
		}
	}
	return fmt.Sprintf("%d/%s", r.N, r.Per)
}

// MarshalText implements encoding.TextMarshaler.
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// maxRate keeps the emission interval (Per/N) at least a microsecond: a
// limit finer than that limits nothing a listener can accept.
const maxRate = 1_000_000

// UnmarshalText implements encoding.TextUnmarshaler, accepting N/s, N/m and
// N/h with N from 1 to 1000000.
func (r *Rate) UnmarshalText(text []byte) error {
	num, unit, ok := strings.Cut(string(text), "/")
	if !ok {
		return fmt.Errorf("invalid rate %q: want a count per s, m or h, such as \"20/s\" or \"600/m\"", text)
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || n > maxRate {
		return fmt.Errorf("invalid rate %q: the count must be 1..%d", text, maxRate)
	}
	for _, u := range rateUnits {
		if unit == u.name {
			*r = Rate{N: n, Per: u.d}
			return nil
		}
	}
	return fmt.Errorf("invalid rate %q: the unit must be s, m or h", text)
}
