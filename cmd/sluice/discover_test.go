package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// dnsmasqServer is a dnsmasq the test can signal and restart on its port.
type dnsmasqServer struct {
	path, addr string
	args       []string
	cmd        *exec.Cmd
	done       chan error
	out        *lockedBuffer
}

// startDnsmasqArgs runs dnsmasq on addr, authoritative for *.test (it
// answers what it does not know with NXDOMAIN or no records, rather than
// REFUSED for want of an upstream), with args, until the test ends.
func startDnsmasqArgs(t *testing.T, addr string, args ...string) *dnsmasqServer {
	t.Helper()
	d := &dnsmasqServer{path: need(t, "dnsmasq", "dnsmasq-base"), addr: addr, args: args}
	d.start(t)
	t.Cleanup(d.kill)
	return d
}

func (d *dnsmasqServer) start(t *testing.T) {
	t.Helper()
	_, port, _ := net.SplitHostPort(d.addr)
	argv := append([]string{"--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--pid-file=", "--user=root", "--bind-interfaces", "--listen-address=127.0.0.1", "--port=" + port,
		"--local=/test/"}, d.args...)
	d.cmd = exec.Command(d.path, argv...)
	d.out = &lockedBuffer{}
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting dnsmasq: %v", err)
	}
	d.done = make(chan error, 1)
	go func() { d.done <- d.cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", d.addr); err == nil {
			c.Close()
			return
		}
		select {
		case err := <-d.done:
			t.Fatalf("dnsmasq exited: %v\n%s", err, d.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dnsmasq did not start on %s:\n%s", d.addr, d.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *dnsmasqServer) kill() {
	if d.cmd != nil {
		d.cmd.Process.Kill()
		<-d.done
		d.cmd = nil
	}
}

// acceptCounts counts the connections each named backend accepted, by IP.
type acceptCounts struct {
	mu sync.Mutex
	n  map[string]int
}

func (a *acceptCounts) add(ip string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n[ip]++
}

func (a *acceptCounts) of(ip string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n[ip]
}

// namedBackends runs a TCP server on each of ips at one port, greeting
// each client with its own address and then echoing, until the test ends.
// It returns the port and the count of connections each accepted.
func namedBackends(t *testing.T, ips ...string) (int, *acceptCounts) {
	t.Helper()
	for range 50 {
		first, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := first.Addr().(*net.TCPAddr).Port
		lns := []net.Listener{first}
		for _, ip := range ips[1:] {
			ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				break
			}
			lns = append(lns, ln)
		}
		if len(lns) < len(ips) {
			closeAll(lns)
			continue
		}
		counts := &acceptCounts{n: map[string]int{}}
		for i, ln := range lns {
			serveNamed(t, ln, func() { counts.add(ips[i]) })
		}
		return port, counts
	}
	t.Fatal("no port free on every address")
	return 0, nil
}

// serveNamed greets each client of ln with ln's address, then echoes;
// accepted is called for each.
func serveNamed(t *testing.T, ln net.Listener, accepted func()) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted()
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				fmt.Fprintf(c, "%s\n", ln.Addr())
				io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// greetings opens n connections through addr in turn and counts the
// backends that greet them.
func greetings(t *testing.T, addr string, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil {
			seen["error: "+err.Error()]++
			continue
		}
		seen[strings.TrimSpace(line)]++
	}
	return seen
}

// only reports whether every greeting came from one of want.
func only(seen map[string]int, want ...string) bool {
	for k := range seen {
		found := false
		for _, w := range want {
			found = found || strings.HasPrefix(k, w+":")
		}
		if !found {
			return false
		}
	}
	return true
}

// TestDiscoveryHostRecords runs sluice with a pool discovered from the A
// records of a dnsmasq hosts file, with health checks, and changes the
// file under traffic: the new backend is checked and then used, the
// removed one gets no new connections while its live connection goes on
// until drain_timeout closes it, and the kept one keeps its verdict. Then
// the resolver dies and the last good set stays.
func TestDiscoveryHostRecords(t *testing.T) {
	port, accepts := namedBackends(t, "127.0.0.21", "127.0.0.22", "127.0.0.23")
	hosts := filepath.Join(t.TempDir(), "hosts")
	writeHosts := func(ips ...string) {
		var b strings.Builder
		for _, ip := range ips {
			fmt.Fprintf(&b, "%s db.test\n", ip)
		}
		if err := os.WriteFile(hosts, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeHosts("127.0.0.21", "127.0.0.22")
	dns := startDnsmasqArgs(t, freeDualPort(t), "--addn-hosts="+hosts, "--local-ttl=1")
	addr := freePort(t)
	p := startSluice(t, nil, "-c", writeFile(t, fmt.Sprintf(`drain_timeout = "3s"
[listeners.db]
bind = %q
pool = "db"
[pools.db]
[pools.db.health]
kind = "tcp"
interval = "300ms"
timeout = "200ms"
rise = 1
[pools.db.discover]
host = "db.test:%d"
resolver = %q
interval = "1s"
`, addr, port, dns.addr)))
	p.waitOutput(t, "listener=db")
	if seen := greetings(t, addr, 6); seen["127.0.0.21:"+strconv.Itoa(port)] != 3 || seen["127.0.0.22:"+strconv.Itoa(port)] != 3 {
		t.Fatalf("greetings %v, want 3 from each of 127.0.0.21 and .22\n%s", seen, p.out)
	}
	// A long-lived connection on the backend about to be removed.
	var long net.Conn
	var longR *bufio.Reader
	for range 4 {
		c, r, greeting := dialLine(t, addr)
		if strings.HasPrefix(greeting, "127.0.0.21:") {
			long, longR = c, r
			break
		}
		c.Close()
	}
	if long == nil {
		t.Fatal("no connection reached 127.0.0.21")
	}

	writeHosts("127.0.0.22", "127.0.0.23")
	dns.cmd.Process.Signal(syscall.SIGHUP) // dnsmasq re-reads its hosts files
	changed := time.Now()
	p.waitOutput(t, fmt.Sprintf(`msg="pool backends changed" pool=db added=127.0.0.23:%d removed=127.0.0.21:%d`, port, port))
	p.waitOutput(t, fmt.Sprintf("msg=\"backend up\" pool=db backend=127.0.0.23:%d", port))
	if seen := greetings(t, addr, 6); !only(seen, "127.0.0.22", "127.0.0.23") || len(seen) != 2 {
		t.Errorf("greetings after the change %v, want 127.0.0.22 and .23 only\n%s", seen, p.out)
	}
	// The removed backend's connection drains: it still works...
	long.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(long, "still here\n")
	if line, err := longR.ReadString('\n'); err != nil || line != "still here\n" {
		t.Fatalf("the removed backend's connection: %q, %v", line, err)
	}
	// ... until drain_timeout after the change closes it.
	long.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := longR.ReadString('\n'); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the removed backend's connection was not closed: %v", err)
	}
	if d := time.Since(changed); d < 2*time.Second {
		t.Errorf("closed %v after the change, want drain_timeout (3s)", d)
	}
	p.waitOutput(t, fmt.Sprintf(`msg="closing the connections of a removed backend" pool=db backend=127.0.0.21:%d connections=1`, port))
	// The removed backend is no longer checked: while the kept one gets
	// three more checks (300ms apart), it gets none.
	removed, kept := accepts.of("127.0.0.21"), accepts.of("127.0.0.22")
	waitFor(t, 10*time.Second, "three checks of the kept backend", func() bool { return accepts.of("127.0.0.22") >= kept+3 })
	if n := accepts.of("127.0.0.21") - removed; n != 0 {
		t.Errorf("the removed backend was checked %d more times", n)
	}
	// The kept backend kept its verdict: up once, at start, never again.
	keptLog := fmt.Sprintf("pool=db backend=127.0.0.22:%d", port)
	if n := strings.Count(p.out.String(), "msg=\"backend up\" "+keptLog); n != 1 || strings.Contains(p.out.String(), "msg=\"backend down\" "+keptLog) {
		t.Errorf("127.0.0.22 came up %d times, want once (its first check), and never down:\n%s", n, p.out)
	}

	// The resolver dies: the last good set stays, and it is said once.
	dns.kill()
	p.waitOutput(t, `msg="discovery failed, keeping the last good set" pool=db`)
	if seen := greetings(t, addr, 4); !only(seen, "127.0.0.22", "127.0.0.23") || len(seen) != 2 {
		t.Errorf("greetings with the resolver down %v, want 127.0.0.22 and .23\n%s", seen, p.out)
	}
	if n := strings.Count(p.out.String(), "discovery failed"); n != 1 {
		t.Errorf("%d failure lines, want 1 (once a minute)", n)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit %d; output:\n%s", code, p.out)
	}
}

// TestDiscoverySRV runs sluice with a pool discovered from SRV records
// and checks that their weights are the backends' weights, that a higher
// priority makes a backup, and that a change of records (dnsmasq restarted
// with new ones: it reads SRV records only at start) is followed.
func TestDiscoverySRV(t *testing.T) {
	port, _ := namedBackends(t, "127.0.0.31", "127.0.0.32", "127.0.0.33")
	records := func(lines ...string) []string {
		args := []string{"--local-ttl=1", "--host-record=t1.db.test,127.0.0.31", "--host-record=t2.db.test,127.0.0.32",
			"--host-record=t3.db.test,127.0.0.33"}
		for _, l := range lines {
			args = append(args, "--srv-host=_pg._tcp.db.test,"+l)
		}
		return args
	}
	p1 := fmt.Sprintf("%d", port)
	dns := startDnsmasqArgs(t, freeDualPort(t), records("t1.db.test,"+p1+",0,1", "t2.db.test,"+p1+",0,3")...)
	addr := freePort(t)
	p := startSluice(t, nil, "-c", writeFile(t, fmt.Sprintf(`[listeners.db]
bind = %q
pool = "db"
[pools.db]
[pools.db.discover]
srv = "_pg._tcp.db.test"
resolver = %q
interval = "1s"
`, addr, dns.addr)))
	p.waitOutput(t, "listener=db")
	// Round robin over weights 1 and 3: two full cycles.
	if seen := greetings(t, addr, 8); seen["127.0.0.31:"+p1] != 2 || seen["127.0.0.32:"+p1] != 6 {
		t.Fatalf("greetings %v, want 2 from t1 (weight 1) and 6 from t2 (weight 3)\n%s", seen, p.out)
	}
	dns.kill()
	dns.args = records("t2.db.test,"+p1+",0,3", "t3.db.test,"+p1+",1,1")
	dns.start(t)
	p.waitOutput(t, fmt.Sprintf(`msg="pool backends changed" pool=db added=127.0.0.33:%d removed=127.0.0.31:%d`, port, port))
	if seen := greetings(t, addr, 4); seen["127.0.0.32:"+p1] != 4 {
		t.Errorf("greetings %v, want all from t2: t3 is a backup\n%s", seen, p.out)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit %d; output:\n%s", code, p.out)
	}
}
