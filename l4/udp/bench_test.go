package udp

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"sluice/internal/pool"
)

// BenchmarkForward times datagrams through sessions that already exist:
// client -> sluice -> echo backend -> sluice -> client, 32 in flight. One
// op is one datagram's round trip. allocs/op counts the whole process
// (clients, backend and proxy), and all of them should be zero:
//
//	go test -run '^$' -bench Forward -benchmem ./l4/udp
func BenchmarkForward(b *testing.B) {
	for _, flows := range []int{1, 16} {
		for _, size := range []int{64, 1400} {
			b.Run(fmt.Sprintf("flows=%d/size=%d", flows, size), func(b *testing.B) {
				benchForward(b, flows, size)
			})
		}
	}
}

func benchForward(b *testing.B, flows, size int) {
	echo := startEcho(b)
	pl, err := pool.New(pool.Options{Backends: []pool.BackendOptions{{Addr: echo}}})
	if err != nil {
		b.Fatal(err)
	}
	p := startProxy(b, &Server{Pool: pl, Logger: slog.New(slog.DiscardHandler)}, "127.0.0.1:0")
	clients := make([]*net.UDPConn, flows)
	for i := range clients {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(p.addr))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Minute))
		clients[i] = c
	}
	msg, buf := make([]byte, size), make([]byte, 1<<16)
	const window = 32
	// Open the sessions before timing.
	roundTrip(b, clients, msg, buf, len(clients))
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += window {
		roundTrip(b, clients, msg, buf, min(window, b.N-done))
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "datagrams/s")
}

// roundTrip sends n datagrams spread over the clients, then reads the n
// replies.
func roundTrip(b *testing.B, clients []*net.UDPConn, msg, buf []byte, n int) {
	for i := range n {
		if _, err := clients[i%len(clients)].Write(msg); err != nil {
			b.Fatal(err)
		}
	}
	for i := range n {
		if _, err := clients[i%len(clients)].Read(buf); err != nil {
			b.Fatalf("reply %d of %d: %v (lost?)", i, n, err)
		}
	}
}

// startEcho runs a UDP echo server on loopback until the benchmark ends.
func startEcho(b *testing.B) netip.AddrPort {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 1<<16)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			c.WriteToUDPAddrPort(buf[:n], from)
		}
	})
	b.Cleanup(func() {
		c.Close()
		wg.Wait()
	})
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// BenchmarkDirect is BenchmarkForward/flows=1/size=64 without sluice: the
// echo backend alone, for comparison.
func BenchmarkDirect(b *testing.B) {
	echo := startEcho(b)
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(echo))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	msg, buf := make([]byte, 64), make([]byte, 1<<16)
	b.ReportAllocs()
	for done := 0; done < b.N; done += 32 {
		roundTrip(b, []*net.UDPConn{c}, msg, buf, min(32, b.N-done))
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "datagrams/s")
}
