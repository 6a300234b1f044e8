package main

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestCertificateExpiryMetric: /metrics says when each certificate a TLS
// listener serves expires, so that an alert can fire before it does.
func TestCertificateExpiryMetric(t *testing.T) {
	f := newTLSFixture(t)
	addr, mtlsAddr, adminAddr := freeDualPort(t), freeDualPort(t), freePort(t)
	cfg := fmt.Sprintf("[admin]\nbind = %q\n\n", adminAddr) + f.httpsConfig(addr, mtlsAddr, startTLSWeb(t))
	p := startDBSluice(t, cfg, "web", "mtls")
	p.waitOutput(t, "admin listening")
	body := string(adminClient{t: t, base: "http://" + adminAddr}.get("/metrics", nil))
	for _, tc := range []struct{ listener, file string }{
		{"web", f.a.CertFile}, {"web", f.b.CertFile}, {"mtls", f.a.CertFile},
	} {
		want := fmt.Sprintf(`sluice_certificate_expiry_timestamp_seconds{cert_file=%q,listener=%q} %s`,
			tc.file, tc.listener, expiryOf(t, tc.file))
		if !strings.Contains(body, want) {
			t.Errorf("no %s in /metrics:\n%s", want, grepLines(body, "sluice_certificate"))
		}
	}
}

// expiryOf returns the NotAfter of the certificate in file, in seconds
// since the epoch as Prometheus prints a gauge.
func expiryOf(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return strconv.FormatFloat(float64(c.NotAfter.Unix()), 'g', -1, 64)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
