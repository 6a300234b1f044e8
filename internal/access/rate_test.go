package access

import (
	"testing"
	"time"
)

func TestRateText(t *testing.T) {
	tests := []struct {
		in   string
		want Rate
		ok   bool
	}{
		{"20/s", Rate{20, time.Second}, true},
		{"600/m", Rate{600, time.Minute}, true},
		{"1/h", Rate{1, time.Hour}, true},
		{"1000000/s", Rate{1000000, time.Second}, true},
		{"0/s", Rate{}, false},
		{"-1/s", Rate{}, false},
		{"1000001/s", Rate{}, false},
		{"20", Rate{}, false},
		{"20/d", Rate{}, false},
		{"20/ s", Rate{}, false},
		{"twenty/s", Rate{}, false},
		{"20/sec", Rate{}, false},
		{"", Rate{}, false},
	}
	for _, tc := range tests {
		var r Rate
		err := r.UnmarshalText([]byte(tc.in))
		if (err == nil) != tc.ok || r != tc.want {
			t.Errorf("%q: %v, %v; want %v ok=%v", tc.in, r, err, tc.want, tc.ok)
		}
		if tc.ok && r.String() != tc.in {
			t.Errorf("%q: String() = %q", tc.in, r.String())
		}
	}
}
