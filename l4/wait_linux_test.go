package l4

import (
	"testing"
	"time"
)

func TestKeepArmed(t *testing.T) {
	now := time.Now()
	var none time.Time
	for _, tc := range []struct {
		name              string
		armed, next, want bool
		armedAt, nextAt   time.Duration // from now
	}{
		{name: "nothing armed, nothing due", want: true},
		{name: "nothing armed, a timer due", next: true, nextAt: time.Second, want: false},
		{name: "the same deadline", armed: true, armedAt: time.Second, next: true, nextAt: time.Second, want: true},
		{name: "armed earlier: a spurious wake-up re-arms later", armed: true, armedAt: time.Second, next: true, nextAt: time.Minute, want: true},
		{name: "a timer due before the armed deadline", armed: true, armedAt: time.Minute, next: true, nextAt: time.Second, want: false},
		{name: "armed, no timer left", armed: true, armedAt: time.Second, want: true},
		{name: "armed deadline passed", armed: true, armedAt: -time.Millisecond, next: true, nextAt: time.Minute, want: false},
		{name: "armed deadline passed, no timer left", armed: true, armedAt: -time.Millisecond, want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			armed, next := none, none
			if tc.armed {
				armed = now.Add(tc.armedAt)
			}
			if tc.next {
				next = now.Add(tc.nextAt)
			}
			if got := keepArmed(armed, next, now); got != tc.want {
				t.Errorf("keepArmed(%v, %v) = %v, want %v", tc.armedAt, tc.nextAt, got, tc.want)
			}
		})
	}
}
