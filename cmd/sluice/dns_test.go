package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDigThroughSluiceToDnsmasq puts sluice in front of three dnsmasq
// instances that answer test.sluice with different addresses, so each
// answer names the backend that gave it, and queries it with dig: over UDP
// (a session per query, ended by its one response), over TCP on the same
// port, and from one fixed source port through a Maglev pool.
func TestDigThroughSluiceToDnsmasq(t *testing.T) {
	dig, dnsmasq := need(t, "dig", "dnsutils"), need(t, "dnsmasq", "dnsmasq-base")
	var backends []string
	for i := range 3 {
		backends = append(backends, startDnsmasq(t, dnsmasq, fmt.Sprintf("127.0.0.%d", 11+i)))
	}
	addr, sticky := freeDualPort(t), freeDualPort(t)
	p := startSluice(t, nil, "-c", writeFile(t, dnsConfig(addr, sticky, backends)))
	p.waitOutput(t, "listener=sticky")
	query := func(to string, args ...string) string {
		t.Helper()
		host, port, _ := net.SplitHostPort(to)
		args = append([]string{"@" + host, "-p", port, "+short", "+tries=1", "+time=5", "test.sluice", "A"}, args...)
		out, err := exec.Command(dig, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %v: %v\n%s\nsluice:\n%s", args, err, out, p.out)
		}
		return strings.TrimSpace(string(out))
	}
	// Every dig uses a new source port: a new flow, picked round robin.
	seen := map[string]int{}
	for range 6 {
		seen[query(addr)]++
	}
	if len(seen) != 3 || seen["127.0.0.11"] != 2 || seen["127.0.0.12"] != 2 || seen["127.0.0.13"] != 2 {
		t.Fatalf("6 queries answered %v, want each of 127.0.0.11-13 twice", seen)
	}
	if got := query(addr, "+tcp"); !strings.HasPrefix(got, "127.0.0.1") {
		t.Fatalf("dig +tcp through the shared port answered %q", got)
	}
	// Maglev on the client's address and port: one source port, one
	// backend, though each query is a session of its own.
	src := "127.0.0.1#" + strconv.Itoa(freeDualPortNumber(t))
	first := query(sticky, "-b", src)
	for range 3 {
		if got := query(sticky, "-b", src); got != first {
			t.Fatalf("queries from %s answered %s then %s", src, first, got)
		}
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit %d; output:\n%s", code, p.out)
	}
	if n := strings.Count(p.out.String(), "end=responses"); n != 10 {
		t.Fatalf("%d sessions ended by their response, want 10:\n%s", n, p.out)
	}
}

func dnsConfig(addr, sticky string, backends []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `drain_timeout = "5s"
[listeners.dns]
bind = %q
protocol = "udp"
pool = "dns"
responses = 1
[listeners.dnstcp]
bind = %q
pool = "dns"
[listeners.sticky]
bind = %q
protocol = "udp"
pool = "sticky"
responses = 1
[pools.sticky]
balance = "maglev"
hash_key = "client_ip_port"
[pools.dns]
`, addr, addr, sticky)
	for _, pool := range []string{"dns", "sticky"} {
		for _, a := range backends {
			fmt.Fprintf(&b, "[[pools.%s.backends]]\naddress = %q\n", pool, a)
		}
	}
	return b.String()
}

// need returns the path of a program the test runs, failing the test if it
// is missing: make test-deps installs it from package pkg.
func need(t *testing.T, name, pkg string) string {
	t.Helper()
	if path, err := exec.LookPath(name); err == nil {
		return path
	}
	// Debian keeps daemons in sbin, which a user's PATH may lack.
	if path := "/usr/sbin/" + name; isExecutable(path) {
		return path
	}
	t.Fatalf("%s is needed by this test: run make test-deps (it installs Debian's %s)", name, pkg)
	return ""
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode()&0o111 != 0
}

// startDnsmasq runs a dnsmasq on a free loopback port, answering
// test.sluice with answer, until the test ends, and returns its address.
func startDnsmasq(t *testing.T, dnsmasq, answer string) string {
	t.Helper()
	addr := freeDualPort(t)
	_, port, _ := net.SplitHostPort(addr)
	// No config file, no upstream, no /etc/hosts, no pid file: only the
	// one name. As root, dnsmasq would drop to user nobody; --user=root
	// keeps it simple in a test.
	cmd := exec.Command(dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
		"--no-hosts", "--pid-file=", "--user=root", "--bind-interfaces", "--listen-address=127.0.0.1",
		"--port="+port, "--address=/test.sluice/"+answer)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting dnsmasq: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	// Ready once it answers over TCP (it opens TCP and UDP together).
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		select {
		case err := <-done:
			t.Fatalf("dnsmasq exited: %v\n%s", err, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dnsmasq did not start on %s:\n%s", addr, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freeDualPort returns a loopback address whose port was free for both
// TCP and UDP a moment ago.
func freeDualPort(t *testing.T) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(freeDualPortNumber(t)))
}

func freeDualPortNumber(t *testing.T) int {
	t.Helper()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		ln.Close()
		if err == nil {
			c.Close()
			return port
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return 0
}
