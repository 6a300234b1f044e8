package config

import "time"

// KeepAlive is a side's TCP keep-alive probes: the keepalive_idle,
// keepalive_interval and keepalive_count keys of a TCP listener (to its
// clients) or of a pool (to its backends, from TCP listeners). The zero
// value sends no probes.
type KeepAlive struct {
	// Idle is the silence before the first probe, whole seconds; zero
	// means no probes.
	Idle time.Duration
	// Interval is the time between unanswered probes, whole seconds; set
	// (by default 10 s) exactly when Idle is.
	Interval time.Duration
	// Count is how many unanswered probes end the connection, 1 to 127;
	// set (by default 3) exactly when Idle is.
	Count int
}

// keepAliveKeys are the keys read by keepAlive.
var keepAliveKeys = []string{"keepalive_idle", "keepalive_interval", "keepalive_count"}

// keepAlive reads a table's keep-alive keys into *ka.
func (t *table) keepAlive(ka *KeepAlive) {
	if !t.has("keepalive_idle") {
		for _, k := range keepAliveKeys[1:] {
			if t.has(k) {
				t.errorf(k, "needs keepalive_idle, which turns the probes on")
			}
		}
		return
	}
	*ka = KeepAlive{Interval: defaultKeepAliveInterval, Count: defaultKeepAliveCount}
	t.keepAliveSeconds("keepalive_idle", &ka.Idle)
	t.keepAliveSeconds("keepalive_interval", &ka.Interval)
	t.integer("keepalive_count", 1, maxKeepAliveCount, &ka.Count)
}

// keepAliveSeconds reads a duration the kernel takes in whole seconds,
// 1 s to TCP_KEEPIDLE's and TCP_KEEPINTVL's upper bound.
func (t *table) keepAliveSeconds(k string, dst *time.Duration) {
	var d time.Duration
	t.duration(k, &d, true)
	switch {
	case d == 0: // absent or already reported
	case d%time.Second != 0:
		t.errorf(k, "must be whole seconds (the kernel counts in seconds), not %v", d)
	case d > maxKeepAliveTime:
		t.errorf(k, "must be at most %v, not %v", maxKeepAliveTime, d)
	default:
		*dst = d
	}
}
