package health

import (
	"bufio"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"
)

// probe runs p once against addr with a three-second deadline: a TLS
// handshake under -race on two busy cores took more than one.
func probe(t *testing.T, p Prober, addr netip.AddrPort) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return p.Probe(ctx, addr)
}

// wantResult checks err against want: "" for success, else a substring.
func wantResult(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("probe failed: %v", err)
	case want != "" && err == nil:
		t.Errorf("probe passed, want an error with %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Errorf("error %q, want %q in it", err, want)
	}
}

func TestTCP(t *testing.T) {
	wantResult(t, probe(t, TCP{}, listenTCP(t, nil)), "")
	// The reason is short: no "dial tcp" and no address, which the log
	// line carries already.
	err := probe(t, TCP{}, deadAddr(t))
	if err == nil || err.Error() != "connect: connection refused" {
		t.Errorf("dead port: %v, want connect: connection refused", err)
	}
}

func TestSendExpect(t *testing.T) {
	// A Redis-like server: answers PING with +PONG, anything else with
	// an error.
	redis := listenTCP(t, func(c net.Conn) {
		line, _ := bufio.NewReader(c).ReadString('\n')
		if line == "PING\r\n" {
			io.WriteString(c, "+PONG\r\n")
		} else {
			io.WriteString(c, "-ERR unknown\r\n")
		}
	})
	// A server that speaks first, as MySQL or SMTP do.
	banner := listenTCP(t, func(c net.Conn) { io.WriteString(c, "220 mail.example ESMTP ready\r\n") })
	silent := listenTCP(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	tests := []struct {
		name string
		p    SendExpect
		addr netip.AddrPort
		want string
	}{
		{"ping pong", SendExpect{Send: []byte("PING\r\n"), Expect: "+PONG"}, redis, ""},
		{"wrong answer", SendExpect{Send: []byte("HELLO\r\n"), Expect: "+PONG"}, redis, `unexpected answer "-ERR unknown\r\n"`},
		{"regexp", SendExpect{Regexp: regexp.MustCompile(`^220 .* ESMTP`)}, banner, ""},
		{"regexp mismatch", SendExpect{Regexp: regexp.MustCompile(`^554`)}, banner, "unexpected answer"},
		{"expect and regexp both", SendExpect{Expect: "ready", Regexp: regexp.MustCompile(`^220`)}, banner, ""},
		{"send only", SendExpect{Send: []byte("x")}, silent, ""},
		{"silent server times out", SendExpect{Send: []byte("PING\r\n"), Expect: "+PONG"}, silent, "timeout"},
		{"refused", SendExpect{Expect: "x"}, deadAddr(t), "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			wantResult(t, tt.p.Probe(ctx, tt.addr), tt.want)
		})
	}
}

// serverAddr returns an httptest server's address.
func serverAddr(t *testing.T, s *httptest.Server) netip.AddrPort {
	t.Helper()
	return netip.MustParseAddrPort(strings.TrimPrefix(strings.TrimPrefix(s.URL, "https://"), "http://"))
}

// patroni answers as Patroni's REST API does for a primary: 200 on
// /primary, 503 on /replica; it echoes the Host header on /host.
func patroni() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/primary", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"state": "running", "role": "primary"}`)
	})
	mux.HandleFunc("/replica", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/host", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "host=%s method=%s", r.Host, r.Method)
	})
	return mux
}

func TestHTTP(t *testing.T) {
	plain := httptest.NewServer(patroni())
	defer plain.Close()
	secure := httptest.NewTLSServer(patroni())
	defer secure.Close()
	roots := x509.NewCertPool()
	roots.AddCert(secure.Certificate())
	pa, sa := serverAddr(t, plain), serverAddr(t, secure)
	tests := []struct {
		name string
		p    HTTP
		addr netip.AddrPort
		want string
	}{
		{"primary", HTTP{Path: "/primary"}, pa, ""},
		{"replica is 503", HTTP{Path: "/replica"}, pa, "status 503, want 200-399"},
		{"status range", HTTP{Path: "/replica", StatusMin: 503, StatusMax: 503}, pa, ""},
		{"not found", HTTP{Path: "/nothing"}, pa, "status 404"},
		{"body", HTTP{Path: "/primary", Body: `"role": "primary"`}, pa, ""},
		{"body missing", HTTP{Path: "/primary", Body: "replica"}, pa, `body does not contain "replica"`},
		{"host header", HTTP{Path: "/host", Host: "db.internal", Body: "host=db.internal"}, pa, ""},
		{"default host is the address", HTTP{Path: "/host", Body: "host=" + pa.String()}, pa, ""},
		{"method", HTTP{Method: "HEAD", Path: "/primary"}, pa, ""},
		{"refused", HTTP{}, deadAddr(t), "connect: connection refused"},
		{"https without verify", HTTP{TLS: true, Path: "/primary"}, sa, ""},
		{"https verified by IP", HTTP{TLS: true, Path: "/primary", Verify: true, RootCAs: roots}, sa, ""},
		{"https verified by name", HTTP{TLS: true, Path: "/primary", Verify: true, RootCAs: roots, SNI: "example.com"}, sa, ""},
		{"https wrong name", HTTP{TLS: true, Verify: true, RootCAs: roots, SNI: "db.internal"}, sa, "tls handshake"},
		{"https unknown CA", HTTP{TLS: true, Verify: true}, sa, "certificate"},
		{"plain to a TLS port", HTTP{Path: "/primary"}, sa, "status 400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantResult(t, probe(t, tt.p, tt.addr), tt.want) })
	}
}

func TestTLS(t *testing.T) {
	s := httptest.NewTLSServer(http.NotFoundHandler())
	defer s.Close()
	roots := x509.NewCertPool()
	roots.AddCert(s.Certificate())
	addr := serverAddr(t, s)
	tests := []struct {
		name string
		p    TLS
		addr netip.AddrPort
		want string
	}{
		{"any certificate", TLS{}, addr, ""},
		{"verified", TLS{Verify: true, RootCAs: roots, SNI: "example.com"}, addr, ""},
		{"wrong name", TLS{Verify: true, RootCAs: roots, SNI: "other.example"}, addr, "tls handshake"},
		{"not TLS", TLS{}, listenTCP(t, func(c net.Conn) { io.WriteString(c, "220 not tls\r\n") }), "tls handshake"},
		{"refused", TLS{}, deadAddr(t), "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantResult(t, probe(t, tt.p, tt.addr), tt.want) })
	}
}

func TestLoadCAFile(t *testing.T) {
	s := httptest.NewTLSServer(http.NotFoundHandler())
	defer s.Close()
	dir := t.TempDir()
	good := dir + "/ca.pem"
	writePEM(t, good, s.Certificate().Raw)
	pool, err := LoadCAFile(good)
	if err != nil {
		t.Fatal(err)
	}
	wantResult(t, probe(t, TLS{Verify: true, RootCAs: pool, SNI: "example.com"}, serverAddr(t, s)), "")
	if _, err := LoadCAFile(dir + "/missing.pem"); err == nil || !strings.Contains(err.Error(), "reading CA file") {
		t.Errorf("missing file: %v", err)
	}
	bad := dir + "/bad.pem"
	writeFile(t, bad, "not a certificate")
	if _, err := LoadCAFile(bad); err == nil || !strings.Contains(err.Error(), "no PEM certificates") {
		t.Errorf("bad file: %v", err)
	}
}
