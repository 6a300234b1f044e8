// Package health checks backends: a Prober performs one check, a Checker runs one prober
// against one backend on an interval with rise/fall hysteresis and reports each state
// change to its Target, and a Monitor owns the checkers of a pool.
//
//	m := &health.Monitor{Logger: logger}
//	m.Add(health.Check{Prober: health.TCP{}, Addr: addr, Rise: 2, Fall: 3}, target) // target.SetHealth(up, reason)
//	m.Start(); defer m.Stop()
//
// The package imports nothing else of sluice: a pool's backend satisfies Target.
package health

import (
	"context"
	"fmt"
	"net/netip"
)

// A Prober performs one check of one backend. It returns nil when the backend is healthy, or
// an error whose text is the reason logged on a state change ("connect refused",
// "role replica, want primary", "timeout after 2s"). It must honour ctx's deadline.
type Prober interface {
	Probe(ctx context.Context, addr netip.AddrPort) error
}

// Role is the replication role a database check requires of a backend.
type Role uint8

const (
	// RoleAny accepts a backend whatever its role.
	RoleAny Role = iota
	// RolePrimary accepts only a backend that takes writes.
	RolePrimary
	// RoleReplica accepts only a read-only follower.
	RoleReplica
)

// String returns "any", "primary" or "replica".
func (r Role) String() string {
	switch r {
	case RoleAny:
		return "any"
	case RolePrimary:
		return "primary"
	case RoleReplica:
		return "replica"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// UnmarshalText reads "primary" or "replica"; "" and "any" are RoleAny.
func (r *Role) UnmarshalText(b []byte) error {
	switch string(b) {
	case "", "any":
		*r = RoleAny
	case "primary":
		*r = RolePrimary
	case "replica":
		*r = RoleReplica
	default:
		return fmt.Errorf("unknown role %q: want \"primary\" or \"replica\"", b)
	}
	return nil
}
