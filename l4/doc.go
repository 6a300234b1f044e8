// Package l4 proxies TCP connections to backends chosen from a pool.
//
// A Server accepts on one or more listening sockets (see package listen),
// picks a backend for each connection, connects with retries, and then moves
// bytes both ways with splice(2) through a kernel pipe, so payload never
// enters user space. A pipe is taken only while bytes are moving and given
// back when the socket runs dry; a direction silent for a while parks, giving
// up its goroutine until the socket is readable again. An idle proxied
// connection holds just its two sockets, a timer and a small struct.
//
//	s := &l4.Server{Name: "pg", Pool: p, Logger: logger}
//	go s.Serve(listeners)
//	defer s.Shutdown(ctx)
package l4
