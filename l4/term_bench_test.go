package l4

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"sluice/internal/certs/mint"
	"sluice/internal/listen"
	"sluice/internal/pool"
)

// BenchmarkTLSCopy echoes 32 KiB per op through a TLS-terminating Server
// to a plain backend. allocs/op counts the whole process (client, proxy
// and backend): about zero means the copy allocates nothing per read.
func BenchmarkTLSCopy(b *testing.B) {
	ca, err := mint.NewCA("bench CA")
	if err != nil {
		b.Fatal(err)
	}
	pair, err := ca.Issue(b.TempDir(), "svc", mint.ECDSA, "svc.test")
	if err != nil {
		b.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(pair.CertFile, pair.KeyFile)
	if err != nil {
		b.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)

	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	echoed := make(chan struct{})
	go func() {
		defer close(echoed)
		c, err := bln.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
		c.Close()
	}()
	p, err := pool.New(pool.Options{Name: "b", Backends: []pool.BackendOptions{
		{Addr: bln.Addr().(*net.TCPAddr).AddrPort()}}})
	if err != nil {
		b.Fatal(err)
	}
	lns, err := listen.TCP(context.Background(), netip.MustParseAddrPort("127.0.0.1:0"), 1)
	if err != nil {
		b.Fatal(err)
	}
	s := &Server{Name: "b", Pool: p, Terminate: tlsTerm{&tls.Config{Certificates: []tls.Certificate{cert}}},
		Logger: slog.New(slog.DiscardHandler)}
	served := make(chan struct{})
	go func() { defer close(served); s.Serve(lns) }()

	c, err := tls.Dial("tcp", lns[0].Addr().String(), &tls.Config{RootCAs: roots, ServerName: "svc.test"})
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 32<<10)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	c.Close()
	s.Close()
	<-served
	bln.Close()
	<-echoed
}
