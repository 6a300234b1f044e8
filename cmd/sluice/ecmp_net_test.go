package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sluice/internal/netnstest"
)

// The ECMP topology, every address inside namespaces the test makes:
//
//	client ns (10.11.0.0/22 local: many sources) ─ 10.10.0.0/24 ─┐
//	host N ns (VIP 10.99.0.10 on lo, sluice)    ─ 10.20.N.0/24 ─ router ns (BIRD 2, ECMP)
//	backend ns (10.31.0.1-3:8080 on lo)         ─ 10.30.0.0/24 ─┘
const (
	ecmpVIP      = "10.99.0.10"
	ecmpHostAS   = 65001
	ecmpRouterAS = 65000
	ecmpBackends = 3
	// hold 3 s (keep-alives every second): the shortest RFC 4271 allows.
	ecmpHold = 3 * time.Second
)

// ecmp is the topology and what runs in it.
type ecmp struct {
	t        *testing.T
	dir      string
	rt, cl   *netnstest.NS
	be       *netnstest.NS
	hosts    []*ecmpHost
	bird     *exec.Cmd
	birdOut  *lockedBuffer
	backends sync.WaitGroup
}

// ecmpHost is one sluice host.
type ecmpHost struct {
	n    int
	ns   *netnstest.NS
	addr string // its address towards the router, its BGP next hop
	cfg  string
	sock string // the admin API's Unix socket
	proc *process
}

func newECMP(t *testing.T) *ecmp {
	netnstest.Require(t, "bird", "sysctl")
	e := &ecmp{t: t, dir: t.TempDir()}
	e.rt, e.cl, e.be = netnstest.New(t, "rt"), netnstest.New(t, "cl"), netnstest.New(t, "be")
	netnstest.Link(t, e.rt, "cl", "10.10.0.1/24", e.cl, "eth0", "10.10.0.2/24")
	netnstest.Link(t, e.rt, "be", "10.30.0.1/24", e.be, "eth0", "10.30.0.2/24")
	// Hash on ports too (policy 1), so one client's connections land on
	// different hosts and Maglev's agreement between hosts is tested.
	e.rt.Run(t, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1")
	e.rt.Run(t, "ip", "route", "add", "10.11.0.0/22", "via", "10.10.0.2")
	e.rt.Run(t, "ip", "route", "add", "10.31.0.0/24", "via", "10.30.0.2")
	e.cl.Run(t, "ip", "route", "add", "default", "via", "10.10.0.1")
	// Every address of the /22 is local: clients bind any of them.
	e.cl.Run(t, "ip", "route", "add", "local", "10.11.0.0/22", "dev", "lo")
	e.be.Run(t, "ip", "route", "add", "default", "via", "10.30.0.1")
	for i := 1; i <= ecmpBackends; i++ {
		e.be.Run(t, "ip", "addr", "add", fmt.Sprintf("10.31.0.%d/32", i), "dev", "lo")
	}
	e.startBackends()
	for n := 1; n <= 3; n++ {
		e.addHost()
	}
	e.startBird()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("BIRD output:\n%s", e.birdOut)
			for _, h := range e.hosts {
				if h.proc != nil {
					t.Logf("host %d output:\n%s", h.n, h.proc.out)
				}
			}
		}
	})
	return e
}

// startBackends serves three backends that greet with their name and the
// host (sluice) the connection came from, then echo.
func (e *ecmp) startBackends() {
	t := e.t
	var lns []net.Listener
	e.be.Do(t, func() {
		for i := 1; i <= ecmpBackends; i++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("10.31.0.%d:8080", i))
			if err != nil {
				t.Fatal(err)
			}
			lns = append(lns, ln)
		}
	})
	var mu sync.Mutex
	var conns []net.Conn
	for i, ln := range lns {
		e.backends.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				e.backends.Go(func() {
					defer c.Close()
					from, _, _ := net.SplitHostPort(c.RemoteAddr().String())
					fmt.Fprintf(c, "b%d %s\n", i+1, from)
					io.Copy(c, c)
				})
			}
		})
	}
	t.Cleanup(func() {
		for _, ln := range lns {
			ln.Close()
		}
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		e.backends.Wait()
	})
}

// addHost makes host N's namespace and configuration; start runs it.
func (e *ecmp) addHost() *ecmpHost {
	t := e.t
	n := len(e.hosts) + 1
	h := &ecmpHost{n: n, ns: netnstest.New(t, fmt.Sprintf("h%d", n)), addr: fmt.Sprintf("10.20.%d.2", n),
		sock: filepath.Join(e.dir, fmt.Sprintf("h%d.sock", n))}
	netnstest.Link(t, e.rt, fmt.Sprintf("h%d", n), fmt.Sprintf("10.20.%d.1/24", n), h.ns, "eth0", h.addr+"/24")
	h.ns.Run(t, "ip", "route", "add", "default", "via", fmt.Sprintf("10.20.%d.1", n))
	h.ns.Run(t, "ip", "addr", "add", ecmpVIP+"/32", "dev", "lo")
	var backends strings.Builder
	for i := 1; i <= ecmpBackends; i++ {
		fmt.Fprintf(&backends, "[[pools.app.backends]]\naddress = \"10.31.0.%d:8080\"\n", i)
	}
	h.cfg = filepath.Join(e.dir, fmt.Sprintf("h%d.toml", n))
	text := fmt.Sprintf(`drain_timeout = "3s"
[admin]
bind = %q
[bgp]
local_as = %d
router_id = %q
withdraw_delay = "1s"
[[bgp.peers]]
address = "10.20.%d.1"
as = %d
hold_time = "3s"
connect_retry = "1s"
password = %q
[listeners.vip]
bind = "%s:80"
pool = "app"
sockets = 1
announce = ["%s/32"]
keepalive_idle = "1s"
keepalive_interval = "1s"
keepalive_count = 2
[pools.app]
balance = "maglev"
[pools.app.health]
interval = "300ms"
timeout = "300ms"
rise = 1
fall = 1
%s`, h.sock, ecmpHostAS, h.addr, n, ecmpRouterAS, ecmpPassword(n), ecmpVIP, ecmpVIP, backends.String())
	if err := os.WriteFile(h.cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	e.hosts = append(e.hosts, h)
	return h
}

// start runs the host's sluice.
func (e *ecmp) start(h *ecmpHost) {
	h.proc = startSluice(e.t, []string{"ip", "netns", "exec", h.ns.Name}, "run", "-c", h.cfg)
}

// stop sends the host's sluice SIGTERM and waits for it to exit.
func (e *ecmp) stop(h *ecmpHost) {
	h.proc.cmd.Process.Signal(syscall.SIGTERM)
	if code := h.proc.wait(e.t, 20*time.Second); code != 0 {
		e.t.Fatalf("host %d exited %d:\n%s", h.n, code, h.proc.out)
	}
}

// ecmpPassword is host n's TCP MD5 key (RFC 2385), which BIRD checks:
// each session is signed (a wrong key here keeps every session down).
func ecmpPassword(n int) string { return fmt.Sprintf("sluice-h%d", n) }

// startBird runs BIRD 2 in the router namespace: a passive eBGP session
// per host (four, the fourth for the scale-out case), short timers, and
// equal paths merged into one multipath kernel route.
func (e *ecmp) startBird() {
	t := e.t
	var b strings.Builder
	fmt.Fprintf(&b, `log stderr all;
router id 10.10.0.1;
protocol device { scan time 1; }
protocol kernel {
	ipv4 { import none; export all; };
	merge paths on;
}
template bgp host {
	local as %d;
	ipv4 { import all; export none; };
	passive on;
	hold time 3;
	keepalive time 1;
	# A host that restarts says CEASE: come back at once, not after
	# the default 60 s.
	error wait time 1, 2;
}
`, ecmpRouterAS)
	for n := 1; n <= 4; n++ {
		fmt.Fprintf(&b, "protocol bgp h%d from host { neighbor 10.20.%d.2 as %d; password %q; }\n", n, n, ecmpHostAS, ecmpPassword(n))
	}
	conf := filepath.Join(e.dir, "bird.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	e.birdOut = &lockedBuffer{}
	e.bird = e.rt.Command("bird", "-f", "-c", conf, "-s", filepath.Join(e.dir, "bird.ctl"))
	e.bird.Stdout, e.bird.Stderr = e.birdOut, e.birdOut
	// A test binary that dies (a timeout panic) takes BIRD with it, and
	// with it the last hold on the router namespace.
	e.bird.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := e.bird.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		e.bird.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		e.bird.Process.Kill()
		<-done
	})
}

var viaRE = regexp.MustCompile(`via (10\.20\.(\d+)\.2)`)

// nexthops returns the hosts (by number) of the VIP's route that BIRD
// installed in the router's kernel table, sorted.
func (e *ecmp) nexthops() []int {
	out, err := e.rt.Command("ip", "route", "show", ecmpVIP+"/32", "proto", "bird").CombinedOutput()
	if err != nil {
		e.t.Fatalf("ip route: %v: %s", err, out)
	}
	var hosts []int
	for _, m := range viaRE.FindAllStringSubmatch(string(out), -1) {
		var n int
		fmt.Sscan(m[2], &n)
		hosts = append(hosts, n)
	}
	slices.Sort(hosts)
	return hosts
}

// waitNexthops waits until the route's hosts are want, and returns how
// long that took.
func (e *ecmp) waitNexthops(want []int, d time.Duration) time.Duration {
	e.t.Helper()
	start := time.Now()
	for !slices.Equal(e.nexthops(), want) {
		if time.Since(start) > d {
			e.t.Fatalf("route to the VIP via hosts %v after %v, want %v", e.nexthops(), d, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// api calls a host's admin API over its Unix socket (the admin listener
// is reachable from outside the namespace that way).
func (h *ecmpHost) api(t *testing.T, method, path, body string, out any) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", h.sock)
		}}}
	defer c.CloseIdleConnections()
	req, _ := http.NewRequest(method, "http://sluice"+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("host %d: %s %s: %v", h.n, method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("host %d: %s %s: %d %s", h.n, method, path, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("host %d: %s: %v", h.n, path, err)
		}
	}
}

// active returns the host's live proxied connections.
func (h *ecmpHost) active(t *testing.T) int64 {
	var p struct {
		Backends []struct {
			Active int64 `json:"active"`
		} `json:"backends"`
	}
	h.api(t, "GET", "/api/v1/pools/app", "", &p)
	var n int64
	for _, b := range p.Backends {
		n += b.Active
	}
	return n
}

// clientIP is the i-th client address, one of 1,000 in 10.11.0.0/22.
func clientIP(i int) net.IP {
	i %= 1000
	return net.IPv4(10, 11, byte(i/250), byte(i%250+1))
}

// flow is one client connection through the VIP.
type flow struct {
	c       net.Conn
	r       *bufio.Reader
	backend string
	host    string // the sluice host's address, as the backend saw it
}

// dialVIP connects from src to the VIP and reads the backend's greeting.
// It must run on a thread inside the client namespace.
func dialVIP(src net.IP) (*flow, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 3 * time.Second}
	c, err := d.Dial("tcp", ecmpVIP+":80")
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(3 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("reading the greeting: %w", err)
	}
	c.SetDeadline(time.Time{})
	f := &flow{c: c, r: r}
	if _, err := fmt.Sscan(line, &f.backend, &f.host); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting %q: %w", line, err)
	}
	return f, nil
}

// alive sends a line on f and waits for its echo.
func (f *flow) alive() error {
	f.c.SetDeadline(time.Now().Add(2 * time.Second))
	defer f.c.SetDeadline(time.Time{})
	if _, err := io.WriteString(f.c, "ping\n"); err != nil {
		return err
	}
	line, err := f.r.ReadString('\n')
	if err == nil && line != "ping\n" {
		err = fmt.Errorf("echo %q", line)
	}
	return err
}

// inClient runs fn on workers goroutines, each on a thread inside the
// client namespace, and waits for them.
func (e *ecmp) inClient(workers int, fn func(w int)) {
	e.t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			if err := e.cl.Enter(func() { fn(w) }); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		e.t.Fatal(err)
	}
}
