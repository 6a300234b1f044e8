package main

// ACME against a real ACME server: pebble (Let's Encrypt's test CA) with
// its DNS answering every name with 127.0.0.1 (pebble-challtestsrv), on
// loopback. sluice proves the name with TLS-ALPN-01 on its own listener,
// stores the certificate, renews it before it expires, and serves the
// stored one when the CA is down.

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"sluice/internal/certs/mint"
)

// acmeName is the name sluice asks pebble for.
const acmeName = "sluice.example.com"

// pebbleCA is a running pebble and its DNS.
type pebbleCA struct {
	dir    string // the directory URL
	mgmt   string // management API: https://host:port
	client *http.Client
	proc   *exec.Cmd
	done   chan error
	caFile string // the CA of pebble's own HTTPS, for SSL_CERT_FILE
}

// goBin finds a program installed by go install (make test-deps).
func goBin(t *testing.T, name string) string {
	t.Helper()
	if path, err := exec.LookPath(name); err == nil {
		return path
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		if path := filepath.Join(strings.TrimSpace(string(out)), "bin", name); isExecutable(path) {
			return path
		}
	}
	t.Fatalf("%s is needed by this test: run make test-deps (go install github.com/letsencrypt/pebble/v2/cmd/...@v2.10.3)", name)
	return ""
}

// startPebble runs pebble-challtestsrv (DNS only: every name is
// 127.0.0.1) and pebble, which validates TLS-ALPN-01 on tlsPort and issues
// certificates valid for validity.
func startPebble(t *testing.T, tlsPort int, validity time.Duration) *pebbleCA {
	t.Helper()
	return startPebbleHTTP(t, tlsPort, 1, validity)
}

// startPebbleHTTP is startPebble validating HTTP-01 on httpPort too.
func startPebbleHTTP(t *testing.T, tlsPort, httpPort int, validity time.Duration) *pebbleCA {
	t.Helper()
	dir := t.TempDir()
	ca, err := mint.NewCA("pebble's HTTPS CA")
	if err != nil {
		t.Fatal(err)
	}
	caFile, err := ca.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Issue(dir, "pebble", mint.ECDSA, "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	dns := freeDualPort(t)
	runBackground(t, goBin(t, "pebble-challtestsrv"), nil, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-dnsserver", dns, "-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
		"-management", freePort(t))
	listen, mgmt := freePort(t), freePort(t)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress": listen, "managementListenAddress": mgmt,
		"certificate": pair.CertFile, "privateKey": pair.KeyFile,
		"httpPort": httpPort, "tlsPort": tlsPort, "ocspResponderURL": "", "keyAlgorithm": "ecdsa",
		"externalAccountBindingRequired": false,
		"profiles":                       map[string]any{"default": map[string]any{"description": "short", "validityPeriod": int(validity.Seconds())}},
	}}
	b, _ := json.Marshal(cfg)
	cfgFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// No random sleeps before validating, no nonces refused at random,
	// and a new validation for each order.
	env := []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0"}
	p := &pebbleCA{dir: "https://" + listen + "/dir", mgmt: "https://" + mgmt, caFile: caFile}
	p.proc, p.done = runBackground(t, goBin(t, "pebble"), env, "-config", cfgFile, "-dnsserver", dns)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	p.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	waitFor(t, 20*time.Second, "pebble answers", func() bool {
		resp, err := p.client.Get(p.dir)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	})
	return p
}

// roots are the roots pebble issues under (made afresh at each start).
func (p *pebbleCA) roots(t *testing.T) *x509.CertPool {
	t.Helper()
	resp, err := p.client.Get(p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	pemBytes, _ := io.ReadAll(resp.Body)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatalf("pebble's root: %q", pemBytes)
	}
	return pool
}

func (p *pebbleCA) stop() {
	p.proc.Process.Kill()
	<-p.done
	p.done <- nil // for the cleanup
}

// runBackground starts a program that t's cleanup kills; its output goes
// to the test log if t fails.
func runBackground(t *testing.T, bin string, env []string, args ...string) (*exec.Cmd, chan error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), out)
		}
	})
	return cmd, done
}

// startSluiceEnv is startSluice with more environment.
func startSluiceEnv(t *testing.T, env []string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...), out: &lockedBuffer{}, done: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("sluice output:\n%s", p.out)
		}
	})
	return p
}

// acmeServed handshakes with sluice at addr as acmeName, verified against
// roots, echoes a line through it, and returns the certificate served.
func acmeServed(addr string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: acmeName, RootCAs: roots})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return nil, err
	}
	got := make([]byte, 11) // the backend's greeting, then the echo
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello\nping\n" {
		return nil, fmt.Errorf("echo through sluice: %q, %v", got, err)
	}
	return c.ConnectionState().PeerCertificates[0], nil
}

// TestACMEWithPebble: a TCP listener with acme gets its certificate from
// pebble by TLS-ALPN-01, stores it, renews it before it expires, and,
// restarted while the CA is down, serves the stored one.
func TestACMEWithPebble(t *testing.T) {
	addr := freeDualPort(t)
	port, _ := strconv.Atoi(portString(addr))
	// Certificates valid for 2 minutes, renewed 100 s before expiry:
	// about 20 s after each issuance.
	pebble := startPebble(t, port, 2*time.Minute)
	storage := t.TempDir()
	cfg := fmt.Sprintf(`[listeners.t]
bind = %q
pool = "echo"
[listeners.t.tls]
acme = { names = [%q], email = "ops@example.com", ca = %q, storage = %q, renew_before = "100s" }

[pools.echo]
[[pools.echo.backends]]
address = %q
`, addr, acmeName, pebble.dir, storage, echoBackend(t))
	cfgFile := writeFile(t, cfg)
	env := []string{"SSL_CERT_FILE=" + pebble.caFile}
	p := startSluiceEnv(t, env, "-c", cfgFile)
	p.waitOutput(t, "ACME certificate ready")
	roots := pebble.roots(t)
	first, err := acmeServed(addr, roots)
	if err != nil {
		t.Fatalf("the ACME certificate: %v", err)
	}
	if !strings.Contains(first.Issuer.CommonName, "Pebble") || first.DNSNames[0] != acmeName {
		t.Fatalf("served %v for %v, want pebble's for %s", first.Issuer, first.DNSNames, acmeName)
	}
	stored, err := os.ReadFile(filepath.Join(storage, acmeName))
	if err != nil || !bytes.Contains(stored, []byte("CERTIFICATE")) {
		t.Fatalf("the certificate in storage: %v", err)
	}
	// A validation is answered by the handshake and not proxied.
	p.waitOutput(t, "end=handshake_failed")
	p.waitOutput(t, "tls-alpn-01 validation")

	// Renewed before it expires: new handshakes get a new certificate.
	var renewed *x509.Certificate
	waitFor(t, 90*time.Second, "a renewed certificate", func() bool {
		c, err := acmeServed(addr, roots)
		if err == nil && c.SerialNumber.Cmp(first.SerialNumber) != 0 {
			renewed = c
		}
		return renewed != nil
	})
	if !renewed.NotAfter.After(first.NotAfter) {
		t.Errorf("renewed certificate expires %v, the first %v", renewed.NotAfter, first.NotAfter)
	}
	// The CA goes away, and sluice restarts: the stored certificate is
	// served.
	waitFor(t, 10*time.Second, "the renewal stored", func() bool {
		b, _ := os.ReadFile(filepath.Join(storage, acmeName))
		return storedSerial(b).Cmp(renewed.SerialNumber) == 0
	})
	pebble.stop()
	p.cmd.Process.Kill()
	<-p.done
	p.done <- nil
	p2 := startSluiceEnv(t, env, "-c", cfgFile)
	p2.waitOutput(t, "msg=listening")
	c, err := acmeServed(addr, roots)
	if err != nil || c.SerialNumber.Cmp(renewed.SerialNumber) != 0 {
		t.Fatalf("with the CA down: %v, serial %v; want the stored certificate", err, c)
	}
}

// storedSerial is the serial of the first certificate in autocert's
// stored file (its key, then the chain, in PEM); -1 if none.
func storedSerial(b []byte) *big.Int {
	for {
		var block *pem.Block
		if block, b = pem.Decode(b); block == nil {
			return big.NewInt(-1)
		}
		if block.Type == "CERTIFICATE" {
			if c, err := x509.ParseCertificate(block.Bytes); err == nil {
				return c.SerialNumber
			}
		}
	}
}

// TestACMEOnHTTPS: an HTTP listener with acme (and a certificate file for
// other names) gets its certificate from pebble, its validation answered
// beside h2 and http/1.1 on the same port, and curl speaks HTTP/2 to it,
// verified against pebble's root; a name of the file's still gets the
// file's certificate.
func TestACMEOnHTTPS(t *testing.T) {
	f := newTLSFixture(t)
	addr := freeDualPort(t)
	port, _ := strconv.Atoi(portString(addr))
	pebble := startPebble(t, port, time.Hour)
	storage, adminAddr := t.TempDir(), freePort(t)
	cfg := fmt.Sprintf(`[admin]
bind = %q

[listeners.web]
bind = %q
protocol = "http"
pool = "web"
[listeners.web.tls]
cert_file = %q
key_file = %q
acme = { names = [%q], ca = %q, storage = %q }

[pools.web]
[[pools.web.backends]]
address = "%s"
`, adminAddr, addr, f.a.CertFile, f.a.KeyFile, acmeName, pebble.dir, storage, startTLSWeb(t))
	p := startSluiceEnv(t, []string{"SSL_CERT_FILE=" + pebble.caFile}, "-c", writeFile(t, cfg))
	p.waitOutput(t, "ACME certificate ready")
	rootFile := filepath.Join(t.TempDir(), "pebble-root.pem")
	resp, err := pebble.client.Get(pebble.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	root, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := os.WriteFile(rootFile, root, 0o644); err != nil {
		t.Fatal(err)
	}
	curl := need(t, "curl", "curl")
	for _, tc := range []struct{ name, ca, want string }{
		{acmeName, rootFile, "backend HTTP/1.1 /acme xfp=https"},
		{"a.test", f.caFile, "backend HTTP/1.1 /acme xfp=https"},
	} {
		out, err := exec.Command(curl, "-sS", "--http2", "--cacert", tc.ca,
			"--resolve", tc.name+":"+portString(addr)+":127.0.0.1",
			"https://"+tc.name+":"+portString(addr)+"/acme").CombinedOutput()
		if err != nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("curl https://%s verified by its CA: %v\n%s", tc.name, err, out)
		}
		p.waitOutput(t, "host="+tc.name+":"+portString(addr)+" path=/acme proto=HTTP/2.0")
	}
	// Both certificates' expiries are in /metrics, the ACME one's
	// under its file in storage.
	served, err := acmeServedHTTP(addr, pebble.roots(t))
	if err != nil {
		t.Fatal(err)
	}
	body := string(adminClient{t: t, base: "http://" + adminAddr}.get("/metrics", nil))
	for _, want := range []string{
		fmt.Sprintf(`sluice_certificate_expiry_timestamp_seconds{cert_file=%q,listener="web"} %s`, f.a.CertFile, expiryOf(t, f.a.CertFile)),
		fmt.Sprintf(`sluice_certificate_expiry_timestamp_seconds{cert_file=%q,listener="web"} %s`, filepath.Join(storage, acmeName),
			strconv.FormatFloat(float64(served.NotAfter.Unix()), 'g', -1, 64)),
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %s in /metrics:\n%s", want, grepLines(body, "sluice_certificate"))
		}
	}
}

// acmeServedHTTP returns the certificate sluice serves for acmeName at
// addr, verified against roots.
func acmeServedHTTP(addr string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: acmeName, RootCAs: roots})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// TestACMEHTTP01: with TLS-ALPN-01 unusable (pebble validates it on a
// port nothing listens on), a TLS listener's ACME certificate comes by
// HTTP-01, answered by the file's plain HTTP listener ahead of its
// redirect-everything route, on its fast path.
func TestACMEHTTP01(t *testing.T) {
	addr, web := freeDualPort(t), freeDualPort(t)
	webPort, _ := strconv.Atoi(portString(web))
	deadTLS, _ := strconv.Atoi(portString(freePort(t)))
	pebble := startPebbleHTTP(t, deadTLS, webPort, time.Hour)
	cfg := fmt.Sprintf(`[listeners.t]
bind = %q
pool = "echo"
[listeners.t.tls]
acme = { names = [%q], ca = %q, storage = %q }

[listeners.web]
bind = %q
protocol = "http"
[[listeners.web.routes]]
redirect_https = true

[pools.echo]
[[pools.echo.backends]]
address = %q
`, addr, acmeName, pebble.dir, t.TempDir(), web, echoBackend(t))
	p := startSluiceEnv(t, []string{"SSL_CERT_FILE=" + pebble.caFile}, "-c", writeFile(t, cfg))
	p.waitOutput(t, "ACME certificate ready")
	c, err := acmeServed(addr, pebble.roots(t))
	if err != nil || c.DNSNames[0] != acmeName {
		t.Fatalf("the ACME certificate: %v", err)
	}
	p.waitOutput(t, "path=/.well-known/acme-challenge/")
	p.waitOutput(t, "route=acme")
	// Other requests still take the route.
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).
		Get("http://" + web + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently {
		t.Errorf("GET /x: %d, want the redirect", resp.StatusCode)
	}
}
