package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nginxStreamModule is where Debian's libnginx-mod-stream puts the stream
// module; the tests' nginx loads it by path, reading no system config.
const nginxStreamModule = "/usr/lib/nginx/modules/ngx_stream_module.so"

// startNginx runs nginx in the foreground with the given stream {} block
// (and, if not empty, http {} block) until the test ends, and waits until
// every address in ready accepts connections.
func startNginx(t *testing.T, stream, http string, ready ...string) {
	t.Helper()
	nginx := need(t, "nginx", "nginx")
	if _, err := os.Stat(nginxStreamModule); err != nil {
		t.Fatalf("nginx's stream module is needed by this test: run make test-deps (it installs Debian's libnginx-mod-stream): %v", err)
	}
	dir := t.TempDir()
	conf := fmt.Sprintf(`load_module %s;
daemon off;
master_process off;
pid %s/nginx.pid;
error_log stderr warn;
events {}
stream {
%s
}
`, nginxStreamModule, dir, stream)
	if http != "" {
		conf += fmt.Sprintf("http {\naccess_log off;\nclient_body_temp_path %s;\n%s\n}\n", dir, http)
	}
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	startPeer(t, "nginx", exec.Command(nginx, "-p", dir, "-c", path), ready)
}

// startHAProxy runs HAProxy in the foreground with the given proxies
// (frontend, backend and listen sections) after a common global and
// defaults section, until the test ends.
func startHAProxy(t *testing.T, proxies string, ready ...string) {
	t.Helper()
	haproxy := need(t, "haproxy", "haproxy")
	conf := `global
	maxconn 1000
defaults
	mode tcp
	timeout connect 5s
	timeout client 30s
	timeout server 30s
` + proxies
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	startPeer(t, "haproxy", exec.Command(haproxy, "-db", "-f", path), ready)
}

// startPeer starts cmd, stops it when the test ends, and waits for its
// addresses to accept connections.
func startPeer(t *testing.T, name string, cmd *exec.Cmd, ready []string) {
	t.Helper()
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
			t.Logf("%s output:\n%s", name, out)
		}
	})
	for _, addr := range ready {
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case err := <-done:
				t.Fatalf("%s exited (%v):\n%s", name, err, out)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s does not accept on %s: %v\n%s", name, addr, err, out)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// dialFrom connects to addr from the loopback address src (any of
// 127.0.0.0/8 is local), so a test can tell its clients apart from the
// proxies between them, which connect from 127.0.0.1.
func dialFrom(t *testing.T, src, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*net.TCPConn)
}

// ask sends req (if any) on a new connection from src to addr and returns
// everything the other side sent until it closed.
func ask(t *testing.T, src, addr, req string) string {
	t.Helper()
	c := dialFrom(t, src, addr)
	if req != "" {
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
	}
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return b.String()
}
