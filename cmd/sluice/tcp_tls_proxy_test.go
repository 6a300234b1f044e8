package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestTLSAfterPROXYHeader: curl --haproxy-protocol sends a PROXY v1
// header, then its TLS handshake, to a TCP listener with [tls] and
// proxy_protocol, as a load balancer in front of sluice would: the
// request reaches the backend, and the log names the header's client.
func TestTLSAfterPROXYHeader(t *testing.T) {
	f := newTLSFixture(t)
	backend := startTLSWeb(t)
	addr := freeDualPort(t)
	p := startDBSluice(t, fmt.Sprintf(`[listeners.edge]
bind = %q
pool = "web"
proxy_protocol = "v1"
proxy_protocol_from = ["127.0.0.0/8"]
[listeners.edge.tls]
cert_file = %q
key_file = %q

[pools.web]
[[pools.web.backends]]
address = "%s"
`, addr, f.a.CertFile, f.a.KeyFile, backend), "edge")
	curl := need(t, "curl", "curl")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := "https://a.test:" + portString(addr) + "/through"
	out, err := exec.CommandContext(ctx, curl, "-sS", "--haproxy-protocol", "--cacert", f.caFile,
		"--resolve", "a.test:"+portString(addr)+":127.0.0.1", url).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "backend HTTP/1.1 /through") {
		t.Fatalf("curl --haproxy-protocol over TLS: %v\n%s", err, out)
	}
	// curl's header names its own socket: the client is itself, and the
	// header was read (no bad_preamble, a handshake after it).
	p.waitOutput(t, "sni=a.test")
	p.waitOutput(t, "end=client_closed")
	// Without a header, from a trusted address: refused before TLS.
	out, err = exec.CommandContext(ctx, curl, "-sS", "--cacert", f.caFile,
		"--resolve", "a.test:"+portString(addr)+":127.0.0.1", url).CombinedOutput()
	if err == nil {
		t.Errorf("a client without a header was served:\n%s", out)
	}
	p.waitOutput(t, "end=bad_preamble")
}
