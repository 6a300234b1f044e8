package main

import (
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestDemoBalancesUDP(t *testing.T) {
	p := startSluice(t, nil, "demo")
	p.waitOutput(t, "nc -u 127.0.0.1 7001")
	seen := map[string]bool{}
	for i := range 6 {
		c := dialUDP(t, "127.0.0.1:7001")
		msg := fmt.Sprintf("ping %d\n", i)
		got := exchange(t, c, msg)
		name, echo, ok := strings.Cut(got, ": ")
		if !ok || !strings.HasPrefix(name, "demo backend") || echo != msg {
			t.Fatalf("reply %q to %q", got, msg)
		}
		seen[name] = true
		// The flow sticks to its backend.
		if again := exchange(t, c, msg); again != got {
			t.Fatalf("second reply %q, first %q", again, got)
		}
	}
	if len(seen) != 3 {
		t.Fatalf("6 flows reached %d backends, want 3: %v", len(seen), seen)
	}
	// The sessions are idle but not expired: the first signal starts the
	// drain, the second ends it at once.
	p.cmd.Process.Signal(syscall.SIGINT)
	p.waitOutput(t, "shutting down")
	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("demo exited %d after SIGINT; output:\n%s", code, p.out)
	}
	lines := 0
	for _, l := range strings.Split(p.out.String(), "\n") {
		if strings.Contains(l, "msg=session") && strings.Contains(l, "listener=demo_udp") &&
			strings.Contains(l, "datagrams_in=2") && strings.Contains(l, "datagrams_out=2") &&
			strings.Contains(l, "end=drain") {
			lines++
		}
	}
	if lines != 6 {
		t.Fatalf("%d session log lines, want 6; output:\n%s", lines, p.out)
	}
}

func TestUDPListenerRunsAndDrains(t *testing.T) {
	backend := udpEcho(t)
	addr := freePort(t)
	cfg := writeFile(t, fmt.Sprintf(`drain_timeout = "10s"
[listeners.u]
bind = %q
protocol = "udp"
pool = "p"
session_timeout = "300ms"
[listeners.t]
bind = %q
pool = "p"
[pools.p]
[[pools.p.backends]]
address = %q
`, addr, addr, backend))
	p := startSluice(t, nil, "-c", cfg)
	p.waitOutput(t, "protocol=udp")
	c := dialUDP(t, addr)
	if got := exchange(t, c, "hi"); got != "hi" {
		t.Fatalf("reply %q", got)
	}
	// The drain waits for the session to expire, well before 10s.
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 5*time.Second); code != 0 {
		t.Fatalf("exit %d; output:\n%s", code, p.out)
	}
	if !strings.Contains(p.out.String(), "end=idle_timeout") {
		t.Fatalf("no idle_timeout session line:\n%s", p.out)
	}
}

// dialUDP opens a UDP client socket connected to addr.
func dialUDP(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UDPConn)
}

// exchange sends msg on c and returns the reply.
func exchange(t *testing.T, c *net.UDPConn, msg string) string {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1<<16)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no reply to %q: %v", msg, err)
	}
	return string(buf[:n])
}

// udpEcho echoes datagrams on a loopback port until the test ends.
func udpEcho(t *testing.T) string {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1<<16)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			c.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	return c.LocalAddr().String()
}
