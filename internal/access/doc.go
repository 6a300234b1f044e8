// Package access decides which clients may connect: allow and deny lists of
// address prefixes, and per-client limits on concurrent connections and on
// the rate of new ones. A listener asks before it touches a backend:
//
//	if !acl.Allowed(client) { refuse(end=denied) }
//	if err := limiter.Acquire(client); err != nil { refuse(end=client_limit) }
//	defer limiter.Release(client)
//
// Everything is keyed by the real client address (after a PROXY header),
// and nothing here takes a lock that every connection shares.
package access
