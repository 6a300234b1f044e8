package main

// The TLS scenarios: full TLS 1.3 handshakes terminated at the proxy
// (ECDSA P-256 and RSA 2048 certificates, each key exchange the client
// offers), bulk throughput through a terminating proxy, and SNI
// passthrough (the proxy routes by the ClientHello's server name, without
// decrypting, to a backend that terminates TLS itself).

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"sluice/internal/certs"
	"sluice/internal/certs/mint"
)

// tlsName is the server name the TLS clients send and the certificates
// carry.
const tlsName = "bench.test"

// tlsClients is how many clients open TLS connections at once: as many as
// the plain new-connection scenario's.
const tlsClients = newConnClients

// tlsBench is what the TLS scenarios need: certificates for the proxies
// and the backend that SNI passthrough leads to.
type tlsBench struct {
	ecdsa, rsa       certs.Pair
	ecdsaPEM, rsaPEM string // certificate and key in one file, for HAProxy
	backend          *tlsBackend
}

// startTLSBench makes the certificates in dir and starts the TLS backend.
func startTLSBench(dir string) (*tlsBench, error) {
	ca, err := mint.NewCA("sluice bench CA")
	if err != nil {
		return nil, err
	}
	tb := &tlsBench{}
	if tb.ecdsa, err = ca.Issue(dir, "bench-ecdsa", mint.ECDSA, tlsName); err != nil {
		return nil, err
	}
	if tb.rsa, err = ca.Issue(dir, "bench-rsa", mint.RSA, tlsName); err != nil {
		return nil, err
	}
	for _, c := range []struct {
		p   certs.Pair
		out *string
	}{{tb.ecdsa, &tb.ecdsaPEM}, {tb.rsa, &tb.rsaPEM}} {
		if *c.out, err = combinedPEM(dir, c.p); err != nil {
			return nil, err
		}
	}
	cert, err := tls.LoadX509KeyPair(tb.ecdsa.CertFile, tb.ecdsa.KeyFile)
	if err != nil {
		return nil, err
	}
	if tb.backend, err = startTLSBackend(&tls.Config{Certificates: []tls.Certificate{cert}}); err != nil {
		return nil, err
	}
	return tb, nil
}

// combinedPEM writes p's certificate followed by its key, as HAProxy's crt
// takes them.
func combinedPEM(dir string, p certs.Pair) (string, error) {
	c, err := os.ReadFile(p.CertFile)
	if err != nil {
		return "", err
	}
	k, err := os.ReadFile(p.KeyFile)
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, filepath.Base(p.CertFile)+".combined")
	return out, os.WriteFile(out, append(c, k...), 0o600)
}

func (tb *tlsBench) Close() error { return tb.backend.Close() }

// tlsBackend terminates TLS and answers one request per connection, then
// closes: the SNI passthrough scenario's backend, and direct's.
type tlsBackend struct {
	ln  net.Listener
	cfg *tls.Config
	wg  sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startTLSBackend(cfg *tls.Config) (*tlsBackend, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("starting TLS backend: %w", err)
	}
	b := &tlsBackend{ln: ln, cfg: cfg, conns: map[net.Conn]struct{}{}}
	b.wg.Go(b.serve)
	return b, nil
}

func (b *tlsBackend) addr() string { return b.ln.Addr().String() }

func (b *tlsBackend) serve() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		b.mu.Lock()
		b.conns[c] = struct{}{}
		b.mu.Unlock()
		b.wg.Go(func() {
			defer func() {
				c.Close()
				b.mu.Lock()
				delete(b.conns, c)
				b.mu.Unlock()
			}()
			b.handle(c)
		})
	}
}

// handle answers the mode byte and request of oneTLSExchange.
func (b *tlsBackend) handle(c net.Conn) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Server(c, b.cfg)
	req := make([]byte, 1+reqSize)
	if _, err := io.ReadFull(tc, req); err != nil {
		return
	}
	if _, err := tc.Write(req[1:]); err != nil {
		return
	}
	tc.Close() // close_notify, then close: the backend closes first
}

// Close stops accepting, closes the open connections and waits for their
// goroutines.
func (b *tlsBackend) Close() error {
	err := b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
	return err
}

// tlsListens are a proxy's TLS listeners.
type tlsListens struct {
	ecdsa, rsa string // terminating TLS with the ECDSA or the RSA certificate, to the plain backend
	sni        string // SNI passthrough to the TLS backend
	*tlsBench
}

// tlsClient is the bench clients' configuration: TLS 1.3, the key
// exchanges in curves (nil: Go's default, X25519MLKEM768 first, with an
// X25519 share too), no session cache (every handshake is a full one),
// and no verification: the client's own CPU is not what is measured.
func tlsClient(curves []tls.CurveID) *tls.Config {
	return &tls.Config{ServerName: tlsName, MinVersion: tls.VersionTLS13, CurvePreferences: curves,
		InsecureSkipVerify: true}
}

// dialTLS connects to addr and runs a TLS handshake; the connection's
// deadline is set when ctx is done.
func dialTLS(ctx context.Context, addr string, cfg *tls.Config) (*tls.Conn, func() bool, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dialing %s: %w", addr, err)
	}
	stopAfter := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Now()) })
	tc := tls.Client(nc, cfg)
	if err := tc.Handshake(); err != nil {
		stopAfter()
		nc.Close()
		return nil, nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
	}
	return tc, stopAfter, nil
}

// oneTLSExchange is oneExchange over TLS: a full handshake, one request,
// the response, then the backend's close.
func oneTLSExchange(ctx context.Context, addr string, cfg *tls.Config, req, resp []byte) error {
	c, stopAfter, err := dialTLS(ctx, addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	defer stopAfter()
	if _, err := c.Write(append([]byte{modeClose}, req...)); err != nil {
		return fmt.Errorf("writing request: %w", err)
	}
	n, err := io.ReadAtLeast(c, resp, len(resp))
	if n != reqSize || !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("reading response and close: got %d bytes: %w", n, err)
	}
	return nil
}

// tlsNewConns opens a TLS connection per exchange, n clients at once.
func tlsNewConns(ctx context.Context, t target, o runOpts, addr string, cfg *tls.Config, n int) (map[string]float64, error) {
	if addr == "" {
		return nil, errors.New("no TLS listener")
	}
	var done atomic.Int64
	w, err := measure(ctx, t, o, n, done.Load, func(ctx context.Context, _ int) error {
		req, resp := make([]byte, reqSize), make([]byte, reqSize+1)
		for ctx.Err() == nil {
			if err := oneTLSExchange(ctx, addr, cfg, req, resp); err != nil {
				return err
			}
			done.Add(1)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return map[string]float64{"hps": w.rate, "cpu": w.cpuPct}, nil
}

// tlsThroughput streams client to backend over one TLS connection ended
// at the proxy; the backend counts what it receives.
func tlsThroughput(ctx context.Context, t target, o runOpts) (map[string]float64, error) {
	if t.tlsECDSA == "" {
		return nil, errors.New("no TLS listener")
	}
	w, err := measure(ctx, t, o, 1, t.be.sinkBytes.Load, func(ctx context.Context, _ int) error {
		c, stopAfter, err := dialTLS(ctx, t.tlsECDSA, tlsClient([]tls.CurveID{tls.X25519}))
		if err != nil {
			return err
		}
		defer c.Close()
		defer stopAfter()
		if _, err := c.Write([]byte{modeSink}); err != nil {
			return err
		}
		buf := make([]byte, 256<<10)
		for ctx.Err() == nil {
			if _, err := c.Write(buf); err != nil {
				return fmt.Errorf("streaming: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return map[string]float64{"gbps": w.rate * 8 / 1e9, "cpu": w.cpuPct}, nil
}

// tlsHandshakeScenario measures full handshakes with the ECDSA or the RSA
// certificate, the client offering curves.
func tlsHandshakeScenario(key, short, what string, rsa bool, curves []tls.CurveID) *scenario {
	cert := "ECDSA P-256"
	if rsa {
		cert = "RSA 2048"
	}
	return &scenario{
		key: key, short: short, proto: "tls",
		title: func(settings) string {
			return fmt.Sprintf("TLS 1.3 full handshakes terminated, %s, %s, %d clients, one exchange each", cert, what, tlsClients)
		},
		run: func(ctx context.Context, t target, s settings) (map[string]float64, error) {
			addr := t.tlsECDSA
			if rsa {
				addr = t.tlsRSA
			}
			return tlsNewConns(ctx, t, s.opts(), addr, tlsClient(curves), tlsClients)
		},
		metrics: loadMetrics("hps", "handshakes", "handshakes/s", "%.0f", "handshakes/core-s"),
	}
}

// tlsScenarios are the TLS rows, run after the others.
var tlsScenarios = []*scenario{
	tlsHandshakeScenario("tls-ecdsa", "TLS ECDSA", "X25519", false, []tls.CurveID{tls.X25519}),
	tlsHandshakeScenario("tls-rsa", "TLS RSA", "X25519", true, []tls.CurveID{tls.X25519}),
	tlsHandshakeScenario("tls-p256", "TLS ECDSA P-256 kex", "P-256 key exchange", false, []tls.CurveID{tls.CurveP256}),
	tlsHandshakeScenario("tls-pq", "TLS ECDSA PQ", "Go's default key shares (X25519MLKEM768 taken by sluice; OpenSSL 3.0 peers take X25519)", false, nil),
	{
		key: "tls-bulk", short: "TLS bulk", proto: "tls",
		title: func(settings) string {
			return "TLS bulk throughput terminated, 1 stream, client to backend (AES-GCM, decrypted at the proxy)"
		},
		run: func(ctx context.Context, t target, s settings) (map[string]float64, error) {
			return tlsThroughput(ctx, t, s.opts())
		},
		metrics: loadMetrics("gbps", "throughput", "Gbit/s", "%.2f", "Gbit/core-s"),
	},
	{
		key: "sni", short: "SNI passthrough", proto: "sni",
		title: func(settings) string {
			return fmt.Sprintf("SNI passthrough, new TLS connections routed by server name to a TLS backend, %d clients, one exchange each", tlsClients)
		},
		run: func(ctx context.Context, t target, s settings) (map[string]float64, error) {
			return tlsNewConns(ctx, t, s.opts(), t.sniAddr, tlsClient([]tls.CurveID{tls.X25519}), tlsClients)
		},
		metrics: loadMetrics("hps", "connections", "conn/s", "%.0f", "conn/core-s"),
	},
}
