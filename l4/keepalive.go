package l4

import (
	"net"
	"time"
)

// KeepAlive is a TCP keep-alive probe setting for one side of the proxied
// connections (HAProxy's clitcpka and srvtcpka). A peer that vanishes
// without a FIN or a reset (a router moved its flow to another host, a
// host lost power) otherwise holds its connection, and the backend's, for
// the whole idle timeout; with probes the kernel ends it after Idle plus
// Interval times Count, and the loop sees the error.
//
// The zero value is off: no option is set, which keeps new connections
// free of the system calls (Go's default keep-alive was removed from the
// data path for that reason). The kernel counts in whole seconds.
type KeepAlive struct {
	// Idle is how long a connection may be silent before the first probe;
	// zero or negative turns probes off.
	Idle time.Duration
	// Interval is the time between unanswered probes; zero means Idle.
	Interval time.Duration
	// Count is how many unanswered probes end the connection; zero means 3.
	Count int
}

// DefaultKeepAliveCount is KeepAlive.Count's default.
const DefaultKeepAliveCount = 3

// On reports whether probes are sent.
func (k KeepAlive) On() bool { return k.Idle > 0 }

// seconds returns the setting in the kernel's units, defaults applied;
// each at least 1 (the kernel refuses 0).
func (k KeepAlive) seconds() (idle, interval, count int) {
	iv := k.Interval
	if iv <= 0 {
		iv = k.Idle
	}
	count = k.Count
	if count <= 0 {
		count = DefaultKeepAliveCount
	}
	return max(1, int(k.Idle/time.Second)), max(1, int(iv/time.Second)), count
}

// dialerConfig is the setting for a net.Dialer (goroutine-run connections).
func (k KeepAlive) dialerConfig() net.KeepAliveConfig {
	if !k.On() {
		return net.KeepAliveConfig{Enable: false, Idle: -1, Interval: -1, Count: -1}
	}
	idle, interval, count := k.seconds()
	return net.KeepAliveConfig{Enable: true, Idle: time.Duration(idle) * time.Second,
		Interval: time.Duration(interval) * time.Second, Count: count}
}
