// Package pool holds named sets of backends and picks one of them for each
// new connection or flow, by round robin, least connections, Maglev
// consistent hashing or the power of two random choices. Pools are shared by
// the L4 and L7 proxies, and later by health checking, which marks backends
// up and down.
//
//	p, err := pool.New(pool.Options{Name: "db", Balance: pool.LeastConn, Backends: bs})
//	b := p.Pick(client, nil)
//	b.Acquire(); defer b.Release()
package pool
