package l7

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"sluice/internal/certs/mint"
	"sluice/internal/pool"
)

// TestGRPCThroughProxy runs gRPC's health service (unary and server
// streaming, statuses in trailers, deadlines) through an h2c upstream.
func TestGRPCThroughProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := health.NewServer()
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	served := make(chan struct{})
	go func() { defer close(served); gs.Serve(ln) }()
	t.Cleanup(func() { gs.Stop(); <-served })

	p := newPool(t, pool.Options{}, ln.Addr().(*net.TCPAddr).AddrPort())
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"grpc": {Pool: p, H2C: true}}, Default: "grpc"})
	conn, err := grpc.NewClient(px.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Unary.
	resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check: %v, %v", resp, err)
	}
	// A status other than OK travels in the trailers.
	if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("Check of an unknown service: %v, want NotFound", err)
	}

	// Server streaming: each message arrives as it is sent.
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []healthpb.HealthCheckResponse_ServingStatus{healthpb.HealthCheckResponse_SERVING,
		healthpb.HealthCheckResponse_NOT_SERVING} {
		msg, err := stream.Recv()
		if err != nil || msg.Status != want {
			t.Fatalf("Watch: %v, %v; want %v", msg, err, want)
		}
		hs.SetServingStatus("svc", healthpb.HealthCheckResponse_NOT_SERVING)
	}

	// A deadline ends a stream that would go on forever. The client's
	// deadline and the backend's (from grpc-timeout, a little shorter)
	// race, as they do without a proxy: the client may see its own
	// DeadlineExceeded, or the backend's answer to its deadline, Canceled
	// ("Stream has ended."), or, when the backend resets the stream
	// (RST_STREAM CANCEL, which the client alone would read as
	// DeadlineExceeded), Internal: a net/http handler can only reset a
	// stream with INTERNAL_ERROR.
	start := time.Now()
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	stream, err = client.Watch(short, &healthpb.HealthCheckRequest{Service: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = stream.Recv()
	}
	switch status.Code(err) {
	case codes.DeadlineExceeded, codes.Canceled, codes.Internal:
	default:
		t.Errorf("Watch past its deadline: %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Watch ended %v after a 200ms deadline", d)
	}
	px.log.waitRequest(t, "a gRPC request", func(r map[string]any) bool {
		return r["path"] == "/grpc.health.v1.Health/Check" && r["proto"] == "HTTP/2.0" && r["status"] == 200.0
	})
}

// TestGRPCOverTLSBothWays: a gRPC client speaks TLS to sluice, and sluice
// speaks TLS with ALPN h2 (which gRPC servers require) to the backend.
func TestGRPCOverTLSBothWays(t *testing.T) {
	site := newTLSSite(t)
	dir := t.TempDir()
	pair, err := site.ca.Issue(dir, "grpc", mint.ECDSA, "grpc.test")
	if err != nil {
		t.Fatal(err)
	}
	creds, err := credentials.NewServerTLSFromFile(pair.CertFile, pair.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(creds))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	served := make(chan struct{})
	go func() { defer close(served); gs.Serve(ln) }()
	t.Cleanup(func() { gs.Stop(); <-served })

	p := newPool(t, pool.Options{}, ln.Addr().(*net.TCPAddr).AddrPort())
	up := Upstream{Pool: p, TLS: &tls.Config{ServerName: "grpc.test", RootCAs: site.roots, NextProtos: []string{"h2"}}}
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"grpc": up}, Default: "grpc",
		TLS: &tls.Config{GetCertificate: site.store.GetCertificate}, Hosts: site.store})
	conn, err := grpc.NewClient(px.addr, grpc.WithTransportCredentials(
		credentials.NewTLS(&tls.Config{ServerName: "a.test", RootCAs: site.roots})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check over TLS: %v, %v", resp, err)
	}
}
