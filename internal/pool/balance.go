package pool

import (
	"fmt"
)

// Balance names the algorithm a pool uses to pick a backend for a new
// connection or flow. The zero value is RoundRobin.
type Balance uint8

const (
	// RoundRobin cycles through the backends in proportion to their
	// weights, interleaving them smoothly (nginx's smooth weighted round
	// robin) rather than in bursts.
	RoundRobin Balance = iota
	// LeastConn picks the backend with the fewest live connections
	// relative to its weight; ties are broken at random.
	LeastConn
	// Maglev hashes the client's address onto a Maglev lookup table, so
	// the same client reaches the same backend on every sluice instance
	// that has the same backend set.
	Maglev
	// Random picks two backends at random, in proportion to their
	// weights, and takes the one with fewer live connections (the power
	// of two choices).
	Random
)

var balanceNames = [...]string{
	RoundRobin: "round_robin",
	LeastConn:  "least_conn",
	Maglev:     "maglev",
	Random:     "random",
}

// String returns the name used in the configuration file.
func (b Balance) String() string {
	if int(b) < len(balanceNames) {
		return balanceNames[b]
	}
	return fmt.Sprintf("Balance(%d)", uint8(b))
}

// MarshalText implements encoding.TextMarshaler.
func (b Balance) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler, accepting the names
// used in the configuration file.
func (b *Balance) UnmarshalText(text []byte) error {
	for i, name := range balanceNames {
		if string(text) == name {
			*b = Balance(i)
			return nil
		}
	}
	return fmt.Errorf("unknown balance %q: want round_robin, least_conn, maglev or random", text)
}

// HashKey says which part of the client's address a hashing algorithm
// (Maglev) hashes. The zero value is ClientIP.
type HashKey uint8

const (
	// ClientIP hashes the client's IP address alone, so every connection
	// from one client reaches the same backend.
	ClientIP HashKey = iota
	// ClientIPPort hashes the client's IP address and port, spreading one
	// client's connections while keeping each one (or each UDP flow) on a
	// fixed backend.
	ClientIPPort
)

var hashKeyNames = [...]string{
	ClientIP:     "client_ip",
	ClientIPPort: "client_ip_port",
}

// String returns the name used in the configuration file.
func (k HashKey) String() string {
	if int(k) < len(hashKeyNames) {
		return hashKeyNames[k]
	}
	return fmt.Sprintf("HashKey(%d)", uint8(k))
}

// MarshalText implements encoding.TextMarshaler.
func (k HashKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *HashKey) UnmarshalText(text []byte) error {
	for i, name := range hashKeyNames {
		if string(text) == name {
			*k = HashKey(i)
			return nil
		}
	}
	return fmt.Errorf("unknown hash key %q: want client_ip or client_ip_port", text)
}
