// Package listen opens the listening sockets that sluice's proxies accept
// from: several sockets per address, each with SO_REUSEPORT, so the kernel
// spreads new connections over one accept loop per socket instead of every
// loop contending for a single queue.
//
//	lns, err := listen.TCP(ctx, netip.MustParseAddrPort("127.0.0.1:7000"), 4)
//	for _, ln := range lns { go acceptLoop(ln) }
package listen

import (
	"context"
	"fmt"
	"net"
	"net/netip"
)

// TCP opens n listening TCP sockets bound to addr with SO_REUSEPORT set on
// each. If any socket fails, the ones already open are closed and the error
// says which address failed. n < 1 is taken as 1.
//
// Reuse-port binding also lets another process of the same user bind the
// same address; the configuration loader rejects duplicate binds within one
// sluice, and the upgrade path relies on the sharing between processes.
func TCP(ctx context.Context, addr netip.AddrPort, n int) ([]*net.TCPListener, error) {
	if n < 1 {
		n = 1
	}
	// No TCP keep-alive probes by default (HAProxy and nginx send none
	// either): Go's default costs four setsockopt calls per accepted
	// connection, and the proxy's idle timeout already ends dead ones.
	lc := net.ListenConfig{Control: reusePort, KeepAlive: -1}
	lns := make([]*net.TCPListener, 0, n)
	for range n {
		ln, err := lc.Listen(ctx, "tcp", addr.String())
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("listening on %s: %w", addr, err)
		}
		lns = append(lns, ln.(*net.TCPListener))
		addr = ln.Addr().(*net.TCPAddr).AddrPort()
	}
	return lns, nil
}
