// Package pool holds named sets of backends and picks one of them for each
// new connection or flow, by round robin, least connections, Maglev
// consistent hashing or the power of two random choices. Pools are shared by
// the TCP and UDP proxies; health checks (ReportCheck, SetHealth), passive checks
// (ReportFailure, ReportSuccess) and the administrative state (SetAdmin)
// decide which backends are up, and Run takes the timed steps of slow
// starts and ejections. A backend's run-time state lives apart from its
// configuration: Update gives a pool new options and backends (a reload, a
// DNS discovery), keeping the state of every address that stays and
// draining the ones that go.
//
//	p, err := pool.New(pool.Options{Name: "db", Balance: pool.LeastConn, Backends: bs})
//	b := p.Pick(client, nil)
//	b.Acquire(); defer b.Release()
package pool
