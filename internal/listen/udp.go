package listen

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// UDP opens n UDP sockets bound to addr with SO_REUSEPORT set on each. The
// kernel picks the socket for a datagram by a hash of its addresses and
// ports, so every datagram of one flow reaches the same socket, which lets
// a proxy keep one flow table per socket without a lock. If any socket
// fails, the ones already open are closed and the error says which address
// failed. n < 1 is taken as 1. With port 0, the first socket's port is used
// by the others.
//
// Each socket asks for a UDPReadBuffer-byte receive buffer: a burst that
// arrives while the proxy is busy waits there instead of being dropped. The
// kernel caps it at net.core.rmem_max.
//
// An unspecified address binds every address: [::] takes IPv6 and IPv4
// (as v4-mapped addresses), 0.0.0.0 IPv4 only. Such sockets also report
// each datagram's destination address (IP_PKTINFO or IPV6_RECVPKTINFO) in
// its control message, so that a reply can be sent from the address the
// client sent to: on a host with several addresses, routing might pick
// another source, and clients drop replies that come from an address they
// did not send to.
func UDP(ctx context.Context, addr netip.AddrPort, n int) ([]*net.UDPConn, error) {
	if n < 1 {
		n = 1
	}
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	network := udpNetwork(addr.Addr())
	lc := net.ListenConfig{Control: reusePort}
	conns := make([]*net.UDPConn, 0, n)
	for range n {
		pc, err := lc.ListenPacket(ctx, network, addr.String())
		if err == nil {
			c := pc.(*net.UDPConn)
			conns = append(conns, c)
			err = destinationInfo(c, addr.Addr())
			if err == nil {
				err = c.SetReadBuffer(UDPReadBuffer)
			}
		}
		if err != nil {
			closeAll(conns)
			return nil, fmt.Errorf("listening on udp %s: %w", addr, err)
		}
		addr = pc.LocalAddr().(*net.UDPAddr).AddrPort()
		addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	}
	return conns, nil
}

// UDPReadBuffer is the receive buffer UDP asks for on each socket. The
// default (net.core.rmem_default, usually 208 KiB) holds only about 270
// small datagrams, as the kernel counts each at its full buffer size; a
// proxy that reads in batches still meets bursts larger than that.
const UDPReadBuffer = 4 << 20

// udpNetwork returns the network to listen on for ip. Go would open a
// dual-stack socket for 0.0.0.0 given "udp"; "udp4" keeps it to IPv4, as
// written. [::] stays dual-stack, which is what ":PORT" means.
func udpNetwork(ip netip.Addr) string {
	switch {
	case ip.Is4():
		return "udp4"
	case ip.IsUnspecified():
		return "udp"
	}
	return "udp6"
}

// destinationInfo asks for each datagram's destination address when the
// socket is bound to every address; a socket bound to one address always
// answers from it.
func destinationInfo(c *net.UDPConn, bound netip.Addr) error {
	if !bound.IsUnspecified() {
		return nil
	}
	var err error
	if bound.Is4() {
		err = ipv4.NewPacketConn(c).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
	} else {
		// On a dual-stack socket this also covers IPv4 datagrams: Linux
		// reports their destination as a v4-mapped IPV6_PKTINFO.
		err = ipv6.NewPacketConn(c).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
	}
	if err != nil {
		return fmt.Errorf("asking for destination addresses: %w", err)
	}
	return nil
}

func closeAll(conns []*net.UDPConn) {
	for _, c := range conns {
		c.Close()
	}
}
