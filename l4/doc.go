// Package l4 proxies TCP connections to backends chosen from a pool.
//
// A Server runs one event loop per listening socket (see package listen):
// one goroutine, waiting on its own edge-triggered epoll set, which it
// parks in Go's poller. The loop accepts, picks a backend, connects with
// retries on raw non-blocking sockets, and moves bytes both ways: small
// messages through the loop's 64 KiB buffer with recv and send, bulk
// transfers with splice(2) through a pipe borrowed while bytes move. An
// idle connection is its two sockets and a small struct: no goroutine, no
// timer, no pipe.
//
//	s := &l4.Server{Name: "pg", Pool: p, Logger: logger}
//	go s.Serve(listeners)
//	defer s.Shutdown(ctx)
//
// Hooks, each nil by default (a connection then takes the plain path):
//
//   - Preamble reads what a client sends before its backend is chosen (a
//     PROXY header): the loop peeks at the client's bytes on each readable
//     event and hands them to ParsePreamble until it returns a length, and
//     consumes that many; the rest stays in the socket. A parse error
//     resets the client (end=bad_preamble); PreambleTimeout bounds the wait
//     (end=preamble_timeout). The parser may set Client.Addr (the real
//     client, used for Pick and the log), TLVs and UniqueID. A client it
//     expects no preamble from (asked first with no bytes) is connected at
//     once, for servers that speak first, and its first read is checked.
//   - Admit decides, after the preamble, whether the client is served; an
//     error resets it, logged as end=denied or as a *RefusedError's End
//     (end=client_limit). Done is called once an admitted connection ends.
//   - BackendPreamble's bytes are written to the backend after connecting,
//     before any of the client's (a PROXY header sent onward); they do not
//     count in bytes_in.
//
// Hooks run on the loop: they must not block.
package l4
