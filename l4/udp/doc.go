// Package udp balances UDP flows over the backends of a pool.
//
// A flow is a client's address and port (on a listener bound to every
// address, also the address it sent to). Its first datagram picks a backend
// and opens a session: a socket connected to that backend, so the kernel
// matches the backend's replies to the flow. One event loop per listening
// socket owns that socket's sessions. It reads client datagrams and backend
// replies in batches (recvmmsg), sends them on in batches (sendmmsg), and
// ends sessions that went idle, got their replies, or lost their backend.
//
//	s := &udp.Server{Name: "dns", Pool: p, Responses: 1, Logger: logger}
//	go s.Serve(conns) // conns from listen.UDP
//	defer s.Shutdown(ctx)
package udp
