package l7

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"sluice/internal/certs"
	"sluice/internal/certs/mint"
	"sluice/internal/pool"
)

// tlsSite is a CA, a certificate store for two sites (a.test with
// *.a.test, and b.test) and a client certificate.
type tlsSite struct {
	ca     *mint.CA
	store  *certs.Store
	roots  *x509.CertPool
	client tls.Certificate
}

func newTLSSite(t *testing.T) *tlsSite {
	t.Helper()
	dir := t.TempDir()
	ca, err := mint.NewCA("l7 test CA")
	if err != nil {
		t.Fatal(err)
	}
	a, err := ca.Issue(dir, "a", mint.ECDSA, "a.test", "*.a.test")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ca.Issue(dir, "b", mint.RSA, "b.test")
	if err != nil {
		t.Fatal(err)
	}
	cp, err := ca.IssueWith(dir, "client", mint.ECDSA, mint.Options{Client: true}, "alice")
	if err != nil {
		t.Fatal(err)
	}
	store, err := certs.New(certs.Options{Pairs: []certs.Pair{a, b}, ReloadInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := tls.LoadX509KeyPair(cp.CertFile, cp.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return &tlsSite{ca: ca, store: store, roots: roots, client: cc}
}

// httpsClient speaks HTTP/2 (or HTTP/1.1, as ALPN settles) over TLS with
// the given server name and client certificates.
func (s *tlsSite) httpsClient(t *testing.T, serverName string, certs ...tls.Certificate) *http.Client {
	tr := &http.Transport{Proxy: nil, ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{RootCAs: s.roots, ServerName: serverName, Certificates: certs}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func startTLSProxy(t *testing.T, site *tlsSite, auth tls.ClientAuthType) *proxyUnderTest {
	t.Helper()
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("xfp=" + r.Header.Get("X-Forwarded-Proto") + " subject=" + r.Header.Get("X-Client-Subject")))
	}))
	p := newPool(t, pool.Options{}, be.addr)
	cfg := &tls.Config{GetCertificate: site.store.GetCertificate, ClientAuth: auth, ClientCAs: site.roots}
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: p}}, Default: "p",
		TLS: cfg, Hosts: site.store, ClientCertHeader: "X-Client-Subject"})
	px.url = "https://" + px.addr
	return px
}

func TestHTTPSServesH2WithForwardedProto(t *testing.T) {
	site := newTLSSite(t)
	px := startTLSProxy(t, site, tls.VerifyClientCertIfGiven)
	for _, tc := range []struct {
		name, sni, host string
		h2              bool
	}{
		{"h2 by ALPN", "a.test", "a.test", true},
		{"wildcard name", "x.a.test", "x.a.test", true},
		{"RSA certificate", "b.test", "b.test", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := site.httpsClient(t, tc.sni)
			resp, body := get(t, c, "GET", px.url+"/"+tc.name, map[string]string{"Host": tc.host,
				"X-Client-Subject": "CN=forged"})
			if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" {
				t.Fatalf("%s %s: %q", resp.Proto, resp.Status, body)
			}
			if body != "xfp=https subject=" {
				t.Errorf("backend saw %q, want X-Forwarded-Proto https and no (forged) subject", body)
			}
		})
	}
}

func TestHTTPSMisdirectedRequest(t *testing.T) {
	site := newTLSSite(t)
	px := startTLSProxy(t, site, tls.NoClientCert)
	c := site.httpsClient(t, "a.test")
	// One connection, as a browser coalescing would use it: a host the
	// certificate covers is served, another host is 421.
	if resp, body := get(t, c, "GET", px.url+"/covered", map[string]string{"Host": "www.a.test"}); resp.StatusCode != 200 {
		t.Errorf("a host the certificate covers: %s %q", resp.Status, body)
	}
	resp, _ := get(t, c, "GET", px.url+"/other", map[string]string{"Host": "b.test"})
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("a host the certificate does not cover: %s, want 421", resp.Status)
	}
	if rec := px.log.waitRequest(t, "/other", byPath("/other")); rec["end"] != "misdirected" {
		t.Errorf("log line %v", rec)
	}
}

func TestHTTPSClientCertificate(t *testing.T) {
	site := newTLSSite(t)
	px := startTLSProxy(t, site, tls.RequireAndVerifyClientCert)
	resp, body := get(t, site.httpsClient(t, "a.test", site.client), "GET", px.url+"/mtls", map[string]string{"Host": "a.test"})
	if resp.StatusCode != 200 || !strings.Contains(body, "subject=CN=alice,O=sluice tests") {
		t.Errorf("%s %q: want the verified subject passed on", resp.Status, body)
	}
	if rec := px.log.waitRequest(t, "/mtls", byPath("/mtls")); rec["client_cert"] != "CN=alice,O=sluice tests" {
		t.Errorf("log line %v", rec)
	}
	req, _ := http.NewRequest("GET", px.url+"/nocert", nil)
	if resp, err := site.httpsClient(t, "a.test").Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("no client certificate: %s, want a refused handshake", resp.Status)
	}
}

// startTLSBackend serves HTTP/2 and HTTP/1.1 over TLS with a certificate
// for backend.test, requiring a client certificate from the site's CA,
// and answers with what it saw.
func startTLSBackend(t *testing.T, site *tlsSite) netip.AddrPort {
	t.Helper()
	dir := t.TempDir()
	pair, err := site.ca.Issue(dir, "backend", mint.ECDSA, "backend.test")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(pair.CertFile, pair.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	srv := &http.Server{Protocols: protocols, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: site.roots},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s sni=%s client=%s", r.Proto, r.TLS.ServerName, r.TLS.PeerCertificates[0].Subject.CommonName)
		})}
	done := make(chan struct{})
	go func() { defer close(done); srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

func TestTLSToBackends(t *testing.T) {
	site := newTLSSite(t)
	be := startTLSBackend(t, site)
	for _, tc := range []struct {
		name  string
		alpn  []string
		roots *x509.CertPool
		want  string
	}{
		{"h2 by ALPN", nil, site.roots, "HTTP/2.0 sni=backend.test client=alice"},
		{"h2 only (gRPC)", []string{"h2"}, site.roots, "HTTP/2.0 sni=backend.test client=alice"},
		{"http/1.1 only", []string{"http/1.1"}, site.roots, "HTTP/1.1 sni=backend.test client=alice"},
		{"unverifiable certificate", nil, x509.NewCertPool(), "502 Bad Gateway\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(t, pool.Options{}, be)
			up := Upstream{Pool: p, TLS: &tls.Config{ServerName: "backend.test", RootCAs: tc.roots,
				Certificates: []tls.Certificate{site.client}, NextProtos: tc.alpn}}
			px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": up}, Default: "p"})
			if _, body := get(t, client(t), "GET", px.url+"/", nil); body != tc.want {
				t.Errorf("got %q, want %q", body, tc.want)
			}
		})
	}
}

// TestTLSHandshakeTimeout: a client that never sends its ClientHello is
// cut off after read_header_timeout (net/http bounds the handshake by it).
func TestTLSHandshakeTimeout(t *testing.T) {
	site := newTLSSite(t)
	p := newPool(t, pool.Options{}, deadPort(t))
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: p}}, Default: "p",
		ReadHeaderTimeout: 200 * time.Millisecond, TLS: &tls.Config{GetCertificate: site.store.GetCertificate}})
	c, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a silent client: %v, want the connection closed", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("closed after %v, want about 200ms", d)
	}
}
