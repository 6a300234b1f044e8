package main

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// udpNamed starts n UDP servers that answer each datagram with their name.
func udpNamed(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for i := range n {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		name := []byte(fmt.Sprintf("backend-%d", i))
		var wg sync.WaitGroup
		wg.Go(func() {
			buf := make([]byte, 1<<16)
			for {
				_, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				c.WriteToUDPAddrPort(name, from)
			}
		})
		t.Cleanup(func() { c.Close(); wg.Wait() })
		addrs = append(addrs, c.LocalAddr().String())
	}
	return addrs
}

// udpFrom sends msg from a new socket bound to src and returns the reply,
// or "" if none comes within d.
func udpFrom(t *testing.T, src, addr, msg string, d time.Duration) string {
	t.Helper()
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, raddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte(msg))
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 1<<16)
	n, err := c.Read(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// TestUDPTwoTiers runs two sluice processes as UDP tiers: the first puts a
// PROXY v2 header in front of every datagram, the second strips it and
// balances by Maglev on the client it names. Each client must reach the
// backend a single tier picks for it, and the second tier must log the
// client with the first tier's socket as via. The first tier checks the
// second over UDP: its checks must carry a v2 LOCAL header, or the second
// tier would drop them and the first would find no backend up.
func TestUDPTwoTiers(t *testing.T) {
	backends := udpNamed(t, 3)
	tier1, tier2, single := freeUDPPort(t), freeUDPPort(t), freeUDPPort(t)
	maglev := "balance = \"maglev\"\nhash_key = \"client_ip\"\n"
	for _, b := range backends {
		maglev += fmt.Sprintf("[[pools.apps.backends]]\naddress = %q\n", b)
	}
	second := startSluice(t, nil, "-c", writeFile(t, fmt.Sprintf(`[listeners.tier2]
bind = %q
protocol = "udp"
pool = "apps"
responses = 1
proxy_protocol = "v2"
proxy_protocol_from = ["127.0.0.1"]
[pools.apps]
`, tier2)+maglev))
	first := startSluice(t, nil, "-c", writeFile(t, fmt.Sprintf(`[listeners.tier1]
bind = %q
protocol = "udp"
pool = "tier2"
responses = 1
[pools.tier2]
send_proxy = "v2"
[pools.tier2.health]
kind = "udp_send_expect"
send = "check"
expect = "backend-"
interval = "500ms"
timeout = "400ms"
[[pools.tier2.backends]]
address = %q
[listeners.single]
bind = %q
protocol = "udp"
pool = "apps"
responses = 1
[pools.apps]
`, tier1, tier2, single)+maglev))
	second.waitOutput(t, "listener=tier2")
	first.waitOutput(t, "listener=single")
	first.waitOutput(t, `msg="backend up" pool=tier2`) // its checks got through
	seen := map[string]int{}
	for i := range 30 {
		src := fmt.Sprintf("127.0.3.%d", 10+i)
		two := udpFrom(t, src, tier1, "q", 5*time.Second)
		one := udpFrom(t, src, single, "q", 5*time.Second)
		if two != one || two == "" {
			t.Errorf("client %s: two tiers reach %q, one tier %q", src, two, one)
		}
		seen[two]++
		second.waitOutput(t, fmt.Sprintf("listener=tier2 client=%s:", src))
	}
	if len(seen) < 2 {
		t.Errorf("30 clients all reached %v: the second tier did not balance by the client", seen)
	}
	if !strings.Contains(second.out.String(), " via=127.0.0.1:") {
		t.Errorf("tier two does not log the first tier as via:\n%s", second.out)
	}
}

// TestUDPAccess checks the access keys on a UDP listener: a denied client
// gets no session, and a client's new flows past its rate are dropped
// while its live flow and other clients go on.
func TestUDPAccess(t *testing.T) {
	backends := udpNamed(t, 1)
	addr := freeUDPPort(t)
	p := startSluice(t, nil, "-c", writeFile(t, fmt.Sprintf(`[listeners.dns]
bind = %q
protocol = "udp"
pool = "p"
deny = ["127.0.0.66"]
new_connections_per_client = "2/m"
[pools.p]
[[pools.p.backends]]
address = %q
`, addr, backends[0])))
	p.waitOutput(t, "listener=dns")
	if got := udpFrom(t, "127.0.0.66", addr, "q", 300*time.Millisecond); got != "" {
		t.Errorf("denied client got %q", got)
	}
	for i, want := range []string{"backend-0", "backend-0", ""} { // each a new flow: a new source port
		if got := udpFrom(t, "127.0.0.7", addr, "q", 300*time.Millisecond); got != want {
			t.Errorf("flow %d of the minute got %q, want %q", i+1, got, want)
		}
	}
	if got := udpFrom(t, "127.0.0.8", addr, "q", 5*time.Second); got != "backend-0" {
		t.Errorf("another client got %q", got)
	}
	p.waitOutput(t, "udp new flow refused")
}

// freeUDPPort returns a loopback UDP address that was free a moment ago.
func freeUDPPort(t *testing.T) string {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}
