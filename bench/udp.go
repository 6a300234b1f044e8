package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
)

// The UDP scenario's shape, fixed so that runs compare: udpFlows client
// sockets (flows), each keeping up to udpWindow datagrams of udpSize bytes
// in flight, sent udpBatch at a time.
//
// "Full rate" is a closed loop: a flow sends a batch whenever one of its
// batches has come back, so the system is always saturated, yet the
// senders never starve the echo backend and the receivers, which share
// their CPUs (an open-loop sender that never blocks measures the load
// generator, not the proxy). A window whose replies were lost is given
// back after udpStall, and the datagrams count as lost.
const (
	udpFlows  = 8
	udpSize   = 64
	udpBatch  = 16
	udpWindow = 4 * udpBatch
	udpStall  = 20 * time.Millisecond
	// udpTail is how long replies may still arrive after the senders
	// stop before the rest count as lost.
	udpTail = 300 * time.Millisecond
)

// udpEcho is the in-process UDP backend: it sends every datagram back to
// its sender. It listens on the TCP backend's address (UDP ports are
// separate from TCP's), so a proxy config's UDP listener points at the
// same address as its TCP one.
type udpEcho struct {
	c  *net.UDPConn
	wg sync.WaitGroup
}

// startUDPEcho echoes datagrams on addr until Close.
func startUDPEcho(addr string) (*udpEcho, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("starting udp backend: %w", err)
	}
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil, fmt.Errorf("starting udp backend: %w", err)
	}
	// Bursts from a proxy that batches arrive faster than one goroutine
	// answers; a larger buffer keeps the backend from being the loss.
	c.SetReadBuffer(4 << 20)
	e := &udpEcho{c: c}
	e.wg.Go(e.serve)
	return e, nil
}

// serve echoes in batches (recvmmsg, sendmmsg) until the socket closes.
func (e *udpEcho) serve() {
	pc := ipv4.NewPacketConn(e.c)
	ms := make([]ipv4.Message, 64)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	for {
		for i := range ms {
			ms[i].Buffers[0] = ms[i].Buffers[0][:cap(ms[i].Buffers[0])]
		}
		n, err := pc.ReadBatch(ms, 0)
		if err != nil {
			return
		}
		for i := range n {
			ms[i].Buffers[0] = ms[i].Buffers[0][:ms[i].N]
		}
		// What the kernel will not take now is lost, as on a real
		// backend whose socket buffer is full.
		for sent := 0; sent < n; {
			k, err := pc.WriteBatch(ms[sent:n], 0)
			if err != nil {
				break
			}
			sent += k
		}
	}
}

// Close stops the backend and waits for it.
func (e *udpEcho) Close() error {
	err := e.c.Close()
	e.wg.Wait()
	return err
}

// udpFullRate sends datagrams through t.addr (over UDP) from udpFlows
// flows as fast as the system echoes them and reports the echoes received per second
// ("dps", median slice of the window), the share of datagrams sent that
// never came back ("loss", percent, over the whole run), and the proxy's
// CPU.
func udpFullRate(ctx context.Context, t target, o runOpts) (map[string]float64, error) {
	conns := make([]*net.UDPConn, udpFlows)
	for i := range conns {
		c, err := net.Dial("udp4", t.addr)
		if err != nil {
			closeUDP(conns)
			return nil, fmt.Errorf("dialing udp %s: %w", t.addr, err)
		}
		// The client must not be where datagrams are lost.
		c.(*net.UDPConn).SetReadBuffer(4 << 20)
		conns[i] = c.(*net.UDPConn)
	}
	defer closeUDP(conns)
	var sent, recv atomic.Int64
	w, err := measure(ctx, t, o, udpFlows, recv.Load, func(ctx context.Context, i int) error {
		return udpFlow(ctx, conns[i], &sent, &recv)
	})
	if err != nil {
		return nil, err
	}
	loss := 0.0
	if s := sent.Load(); s > 0 {
		loss = max(0, 100*float64(s-recv.Load())/float64(s))
	}
	return map[string]float64{"dps": w.rate, "loss": loss, "cpu": w.cpuPct}, nil
}

// udpFlow sends on c until ctx is done, keeping up to udpWindow
// datagrams in flight, while a receiver counts the echoes; the receiver
// stops udpTail after the last send.
func udpFlow(ctx context.Context, c *net.UDPConn, sent, recv *atomic.Int64) error {
	credits := make(chan struct{}, udpWindow/udpBatch)
	for range cap(credits) {
		credits <- struct{}{}
	}
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Go(func() { errc <- udpReceive(c, recv, credits) })
	defer wg.Wait()
	pc := ipv4.NewPacketConn(c)
	ms := make([]ipv4.Message, udpBatch)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, udpSize)}
	}
	stall := time.NewTimer(udpStall)
	defer stall.Stop()
	for ctx.Err() == nil {
		stall.Reset(udpStall)
		select {
		case <-credits:
		case <-stall.C: // a batch was lost: its credit never comes back
		case <-ctx.Done():
			continue
		}
		n, err := pc.WriteBatch(ms, 0)
		if err != nil {
			// ECONNREFUSED reports an ICMP error for an earlier
			// datagram; ENOBUFS a full queue. Both are loss, not a
			// failed run.
			continue
		}
		sent.Add(int64(n))
	}
	c.SetReadDeadline(time.Now().Add(udpTail))
	return <-errc
}

// udpReceive counts datagrams read from c until its read deadline passes,
// giving a credit back for every udpBatch received.
func udpReceive(c *net.UDPConn, recv *atomic.Int64, credits chan<- struct{}) error {
	pc := ipv4.NewPacketConn(c)
	ms := make([]ipv4.Message, 64)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	got := 0
	for {
		n, err := pc.ReadBatch(ms, 0)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// An ICMP error reported on the socket: keep counting.
			continue
		}
		recv.Add(int64(n))
		for got += n; got >= udpBatch; got -= udpBatch {
			select {
			case credits <- struct{}{}:
			default: // the sender gave itself this one after a stall
			}
		}
	}
}

func closeUDP(conns []*net.UDPConn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}
