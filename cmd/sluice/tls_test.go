package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"sluice/internal/certs"
	"sluice/internal/certs/mint"
)

// tlsFixture is a test CA with certificates for an HTTPS listener: a.test
// (ECDSA, the default), *.b.test (RSA), and a client certificate.
type tlsFixture struct {
	dir          string
	ca           *mint.CA
	caFile       string
	a, b, client certs.Pair
}

func newTLSFixture(t *testing.T) *tlsFixture {
	t.Helper()
	f := &tlsFixture{dir: t.TempDir()}
	var err error
	if f.ca, err = mint.NewCA("sluice test CA"); err != nil {
		t.Fatal(err)
	}
	if f.caFile, err = f.ca.Write(f.dir); err != nil {
		t.Fatal(err)
	}
	f.a = f.issue(t, "a", mint.ECDSA, "a.test")
	f.b = f.issue(t, "b", mint.RSA, "*.b.test")
	if f.client, err = f.ca.IssueWith(f.dir, "client", mint.ECDSA, mint.Options{Client: true}, "alice"); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *tlsFixture) issue(t *testing.T, base string, kt mint.KeyType, names ...string) certs.Pair {
	t.Helper()
	p, err := f.ca.Issue(f.dir, base, kt, names...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startTLSWeb starts a backend answering with the protocol it was spoken
// to in and the headers sluice sets for TLS.
func startTLSWeb(t *testing.T) netip.AddrPort {
	t.Helper()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "backend %s %s xfp=%s subject=%s\n", r.Proto, r.URL.Path,
			r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Client-Subject"))
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// httpsConfig is an HTTPS listener "web" on addr (client certificates
// requested) and "mtls" on mtlsAddr (required), both to one backend.
func (f *tlsFixture) httpsConfig(addr, mtlsAddr string, backend netip.AddrPort) string {
	return fmt.Sprintf(`[listeners.web]
bind = %[1]q
protocol = "http"
pool = "web"
[listeners.web.tls]
cert_file = %[3]q
key_file = %[4]q
certificates = [{ cert_file = %[5]q, key_file = %[6]q }]
client_auth = "request"
client_ca_file = %[7]q
client_cert_header = "X-Client-Subject"
reload_interval = "50ms"

[listeners.mtls]
bind = %[2]q
protocol = "http"
pool = "web"
[listeners.mtls.tls]
cert_file = %[3]q
key_file = %[4]q
client_auth = "require"
client_ca_file = %[7]q

[pools.web]
[[pools.web.backends]]
address = "%[8]s"
`, addr, mtlsAddr, f.a.CertFile, f.a.KeyFile, f.b.CertFile, f.b.KeyFile, f.caFile, backend)
}

func startHTTPS(t *testing.T) (f *tlsFixture, addr, mtlsAddr string, p *process) {
	t.Helper()
	f = newTLSFixture(t)
	addr, mtlsAddr = freeDualPort(t), freeDualPort(t)
	p = startDBSluice(t, f.httpsConfig(addr, mtlsAddr, startTLSWeb(t)), "web", "mtls")
	return f, addr, mtlsAddr, p
}

// sClient runs openssl s_client with args against addr, sending no
// request, and returns its output and whether it exited zero.
func sClient(t *testing.T, addr string, args ...string) (string, bool) {
	t.Helper()
	bin := need(t, "openssl", "openssl")
	cmd := exec.Command(bin, append([]string{"s_client", "-connect", addr}, args...)...)
	// Q on stdin: quit once connected, after reading what the server sent
	// (a refusal of a missing client certificate comes after the TLS 1.3
	// handshake).
	cmd.Stdin = strings.NewReader("Q\n")
	out, err := cmd.CombinedOutput()
	return string(out), err == nil
}

// servedCert returns the leaf certificate in s_client's output.
func servedCert(t *testing.T, out string) *x509.Certificate {
	t.Helper()
	i := strings.Index(out, "-----BEGIN CERTIFICATE-----")
	if i < 0 {
		t.Fatalf("no certificate in s_client's output:\n%s", out)
	}
	block, _ := pem.Decode([]byte(out[i:]))
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestHTTPSWithOpenSSL(t *testing.T) {
	f, addr, mtlsAddr, _ := startHTTPS(t)
	tests := []struct {
		name, sni string
		want      string // the DNS name of the certificate served
		alg       x509.PublicKeyAlgorithm
	}{
		{"exact name", "a.test", "a.test", x509.ECDSA},
		{"wildcard name", "www.b.test", "*.b.test", x509.RSA},
		{"unknown name gets the default", "c.test", "a.test", x509.ECDSA},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, ok := sClient(t, addr, "-servername", tc.sni, "-alpn", "h2,http/1.1", "-CAfile", f.caFile)
			if !ok {
				t.Fatalf("s_client failed:\n%s", out)
			}
			c := servedCert(t, out)
			if c.DNSNames[0] != tc.want || c.PublicKeyAlgorithm != tc.alg {
				t.Errorf("served %v (%v), want %s (%v)", c.DNSNames, c.PublicKeyAlgorithm, tc.want, tc.alg)
			}
			wantContains(t, out, "ALPN protocol: h2", "Verify return code: 0 (ok)")
		})
	}
	t.Run("TLS 1.1 refused", func(t *testing.T) {
		// SECLEVEL=0: OpenSSL 3 would not even offer TLS 1.1 otherwise.
		out, ok := sClient(t, addr, "-servername", "a.test", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
		if ok || !strings.Contains(out, "alert protocol version") {
			t.Errorf("a TLS 1.1 client was not refused with a protocol version alert:\n%s", out)
		}
	})
	t.Run("TLS 1.2", func(t *testing.T) {
		out, ok := sClient(t, addr, "-servername", "a.test", "-tls1_2", "-alpn", "h2")
		if !ok || !strings.Contains(out, "Protocol  : TLSv1.2") {
			t.Errorf("TLS 1.2 refused:\n%s", out)
		}
	})
	t.Run("client certificate required", func(t *testing.T) {
		// TLS 1.2: the refusal ends the handshake (in TLS 1.3 it comes
		// after, once the client reads).
		out, ok := sClient(t, mtlsAddr, "-servername", "a.test", "-tls1_2")
		if ok || !strings.Contains(out, "alert handshake failure") {
			t.Errorf("no client certificate, yet no refusal:\n%s", out)
		}
		out, ok = sClient(t, mtlsAddr, "-servername", "a.test", "-cert", f.client.CertFile, "-key", f.client.KeyFile)
		if !ok || strings.Contains(out, "alert") {
			t.Errorf("with a client certificate:\n%s", out)
		}
	})
}

func TestHTTPSWithCurl(t *testing.T) {
	f, addr, mtlsAddr, p := startHTTPS(t)
	_, port, _ := net.SplitHostPort(addr)
	_, mport, _ := net.SplitHostPort(mtlsAddr)
	resolve := []string{"--cacert", f.caFile, "--resolve", "a.test:" + port + ":127.0.0.1",
		"--resolve", "www.b.test:" + port + ":127.0.0.1", "--resolve", "a.test:" + mport + ":127.0.0.1"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"h2 by ALPN", []string{"--http2", "https://a.test:" + port + "/x"}, "backend HTTP/1.1 /x xfp=https subject=\n200 2"},
		{"RSA wildcard", []string{"--http2", "https://www.b.test:" + port + "/y"}, "backend HTTP/1.1 /y xfp=https subject=\n200 2"},
		{"http/1.1", []string{"--http1.1", "https://a.test:" + port + "/z"}, "backend HTTP/1.1 /z xfp=https subject=\n200 1.1"},
		{"client certificate", []string{"--http2", "--cert", f.client.CertFile, "--key", f.client.KeyFile,
			"https://a.test:" + port + "/c"}, "backend HTTP/1.1 /c xfp=https subject=CN=alice,O=sluice tests\n200 2"},
		{"forged subject dropped", []string{"--http2", "-H", "X-Client-Subject: CN=root", "https://a.test:" + port + "/f"},
			"backend HTTP/1.1 /f xfp=https subject=\n200 2"},
		// One connection for both hosts, as a browser would if one
		// certificate covered both: b's host is not a.test's.
		{"misdirected", []string{"--http2", "-H", "Host: www.b.test", "https://a.test:" + port + "/m"},
			"421 Misdirected Request\n421 2"},
		{"mTLS listener", []string{"--http2", "--cert", f.client.CertFile, "--key", f.client.KeyFile,
			"https://a.test:" + mport + "/mtls"}, "backend HTTP/1.1 /mtls xfp=https subject=\n200 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := curl(t, slices.Concat(resolve, []string{"-w", "%{http_code} %{http_version}"}, tc.args)...)
			if out != tc.want {
				t.Errorf("got %q, want %q", out, tc.want)
			}
		})
	}
	p.waitOutput(t, `client_cert="CN=alice,O=sluice tests"`)
}

func TestH2specOverTLS(t *testing.T) {
	h2spec := needH2spec(t)
	_, addr, _, _ := startHTTPS(t)
	host, port, _ := strings.Cut(addr, ":")
	report := filepath.Join(t.TempDir(), "h2spec.xml")
	out, _ := exec.Command(h2spec, "-t", "-k", "-h", host, "-p", port, "-o", "2", "-j", report).CombinedOutput()
	failed, total, err := h2specFailures(report)
	if err != nil {
		t.Fatalf("h2spec report: %v\n%s", err, out)
	}
	if total < 140 {
		t.Fatalf("h2spec ran %d cases, want all 145:\n%s", total, out)
	}
	// Over TLS a connection is HTTP/2 by ALPN, so 3.5/2 (an invalid
	// preface read as HTTP/1.1 on an h2c port) passes; the rest are
	// Go's, as on h2c.
	want := slices.DeleteFunc(slices.Clone(h2specKnownFailures), func(s string) bool { return s == "3.5/2" })
	if !slices.Equal(failed, want) {
		t.Errorf("h2spec --tls failed %v, want exactly the known %v:\n%s", failed, want, out)
	}
}

// TestCertificateReloadUnderLoad replaces the certificate files while
// clients connect continuously: no handshake fails, new connections get
// the new certificate, and a broken new file keeps the old one.
func TestCertificateReloadUnderLoad(t *testing.T) {
	f, addr, _, p := startHTTPS(t)
	roots := x509.NewCertPool()
	roots.AddCert(f.ca.Cert)
	var served sync.Map // serial -> true
	var handshakes, failures atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
					&tls.Config{RootCAs: roots, ServerName: "a.test"})
				handshakes.Add(1)
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				served.Store(c.ConnectionState().PeerCertificates[0].SerialNumber.String(), true)
				c.Close()
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	serialOf := func(pr certs.Pair) string {
		c, err := certs.Load(pr)
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf.SerialNumber.String()
	}
	seen := func(serial string) bool { _, ok := served.Load(serial); return ok }
	for i := range 3 {
		renewed := serialOf(f.issue(t, "a", mint.ECDSA, "a.test"))
		eventually(t, 20*time.Second, fmt.Sprintf("renewal %d served", i+1), func() bool { return seen(renewed) })
	}
	// A broken file: logged, and the last good certificate stays.
	last := serialOf(f.a)
	if err := os.WriteFile(f.a.CertFile, []byte("-----BEGIN CERTIFICATE-----\nbroken\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.waitOutput(t, "reloading certificate failed; keeping the loaded certificate")
	n := handshakes.Load()
	eventually(t, 20*time.Second, "more handshakes", func() bool { return handshakes.Load() > n+50 })
	close(stop)
	wg.Wait()
	stop = make(chan struct{})
	if failures.Load() != 0 {
		t.Errorf("%d of %d handshakes failed during reloads; the first: %v", failures.Load(), handshakes.Load(), firstErr.Load())
	}
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "a.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.ConnectionState().PeerCertificates[0].SerialNumber.String(); got != last {
		t.Errorf("after a broken file, served serial %s, want the last good %s", got, last)
	}
	t.Logf("%d handshakes, 0 failed, across 3 renewals and a broken file", handshakes.Load())
}

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func wantContains(t *testing.T, s string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Errorf("missing %q in:\n%s", w, s)
		}
	}
}

// TestDemoServesHTTPS: the demo's HTTPS listener, with the certificate it
// makes at start, routes as its HTTP listener does, over HTTP/2.
func TestDemoServesHTTPS(t *testing.T) {
	p := startSluice(t, nil, "demo")
	p.waitOutput(t, "Press Ctrl-C to stop.")
	out := p.out.String()
	i := strings.Index(out, "curl --cacert ")
	if i < 0 {
		t.Fatalf("the demo prints no HTTPS example:\n%s", out)
	}
	caFile := strings.Fields(out[i:])[2]
	for path, want := range map[string]string{
		"/healthz": "ok\n200 2",
		"/api/x":   "hello from demo web backend ",
	} {
		if got := curl(t, "--cacert", caFile, "--http2", "-w", "%{http_code} %{http_version}", "https://localhost:7443"+path); !strings.HasPrefix(got, want) {
			t.Errorf("%s: %q, want it to start %q", path, got, want)
		}
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("demo exited %d after SIGINT; output:\n%s", code, p.out)
	}
	if _, err := os.Stat(caFile); !os.IsNotExist(err) {
		t.Errorf("the demo left its certificates behind: %v", err)
	}
}

// TestTLSToBackends: a pool with [tls] is spoken to over TLS (h2 by ALPN,
// the server name, CA and client certificate of its table), and its https
// check shares those settings: the backend, which requires a client
// certificate, is marked up by it.
func TestTLSToBackends(t *testing.T) {
	f := newTLSFixture(t)
	be := f.issue(t, "backend", mint.ECDSA, "backend.test")
	cert, err := tls.LoadX509KeyPair(be.CertFile, be.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(f.ca.Cert)
	srv := &http.Server{TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s client=%s\n", r.Proto, r.TLS.ServerName, r.TLS.PeerCertificates[0].Subject.CommonName)
		})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { srv.Close(); <-done })

	addr := freeDualPort(t)
	p := startDBSluice(t, fmt.Sprintf(`[listeners.web]
bind = %q
protocol = "http"
pool = "secure"

[pools.secure]
[pools.secure.tls]
sni = "backend.test"
ca_file = %q
cert_file = %q
key_file = %q

[pools.secure.health]
kind = "https"
interval = "200ms"
timeout = "150ms"
rise = 1

[[pools.secure.backends]]
address = %q
`, addr, f.caFile, f.client.CertFile, f.client.KeyFile, ln.Addr()), "web")
	p.waitOutput(t, `msg="backend up" pool=secure`)
	if out := curl(t, "http://"+addr+"/x"); out != "HTTP/2.0 backend.test client=alice\n" {
		t.Errorf("got %q, want HTTP/2 over TLS with the client certificate", out)
	}
}

// TestSNIPassthrough: a TCP listener with sni_routes passes each TLS
// connection, undecrypted, to the pool its server name picks; openssl
// completes its handshake with that backend's own certificate.
func TestSNIPassthrough(t *testing.T) {
	f := newTLSFixture(t)
	backend := func(name string) net.Addr {
		pair := f.issue(t, strings.ReplaceAll(name, "*", "star"), mint.ECDSA, name)
		cert, err := tls.LoadX509KeyPair(pair.CertFile, pair.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				wg.Go(func() { defer c.Close(); fmt.Fprintf(c, "backend %s\n", name); c.Read(make([]byte, 1)) })
			}
		})
		t.Cleanup(func() { ln.Close(); wg.Wait() })
		return ln.Addr()
	}
	a, b := backend("db.test"), backend("*.web.test")
	addr := freeDualPort(t)
	p := startDBSluice(t, fmt.Sprintf(`[listeners.edge]
bind = %q
client_hello_timeout = "1s"
[[listeners.edge.sni_routes]]
names = ["db.test"]
pool = "db"
[[listeners.edge.sni_routes]]
names = ["*.web.test"]
pool = "web"

[pools.db]
[[pools.db.backends]]
address = "%s"
[pools.web]
[[pools.web.backends]]
address = "%s"
`, addr, a, b), "edge")
	for _, tc := range []struct{ sni, want string }{{"db.test", "db.test"}, {"shop.web.test", "*.web.test"}} {
		out, ok := sClient(t, addr, "-servername", tc.sni, "-CAfile", f.caFile)
		if !ok {
			t.Fatalf("%s: s_client failed:\n%s", tc.sni, out)
		}
		if c := servedCert(t, out); c.DNSNames[0] != tc.want {
			t.Errorf("%s: served %v, want the backend's own %s", tc.sni, c.DNSNames, tc.want)
		}
		wantContains(t, out, "Verify return code: 0 (ok)")
	}
	if out, ok := sClient(t, addr, "-servername", "other.test"); ok || strings.Contains(out, "BEGIN CERTIFICATE") {
		t.Errorf("an unknown name was let through:\n%s", out)
	}
	p.waitOutput(t, "sni=shop.web.test")
	p.waitOutput(t, "sni=other.test")
	// A client that never finishes its hello is cut off.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{22, 3, 1, 0, 200})
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a slow ClientHello was not cut off after client_hello_timeout: %v", err)
	}
}
