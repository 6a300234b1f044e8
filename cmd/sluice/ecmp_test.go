package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestECMP runs three sluice hosts announcing one VIP over BGP to a BIRD 2
// router that spreads clients over them with ECMP, and backends behind
// them in a Maglev pool (issue 16).
func TestECMP(t *testing.T) {
	e := newECMP(t)
	for _, h := range e.hosts {
		e.start(h)
	}
	took := e.waitNexthops([]int{1, 2, 3}, 30*time.Second)
	t.Logf("all three hosts announced %v after their start", took.Round(time.Millisecond))
	t.Run("one backend per client on every host", e.sameBackendEverywhere)
	t.Run("withdrawn when the pool has no backend or the host is drained", e.withdrawOnPoolLoss)
	t.Run("a reload applies a changed announce list", e.reloadAnnounce)
	t.Run("rolling restart under load refuses nothing", e.rollingRestart)
	t.Run("a fourth host: plain ECMP against a resilient group", e.fourthHost)
}

// sameBackendEverywhere: 1,000 clients, three connections each; the router
// hashes ports too, so a client's connections meet different hosts, and
// each must reach the same backend (Maglev with the same table on each).
func (e *ecmp) sameBackendEverywhere(t *testing.T) {
	const clients, each, workers = 1000, 3, 20
	var mu sync.Mutex
	backends := map[int]map[string]bool{}
	hostsOf := map[int]map[string]bool{}
	perHost := map[string]int{}
	var failed []error
	e.inClient(workers, func(w int) {
		for i := w; i < clients; i += workers {
			for range each {
				f, err := dialVIP(clientIP(i))
				mu.Lock()
				if err != nil {
					failed = append(failed, fmt.Errorf("client %v: %w", clientIP(i), err))
				} else {
					if backends[i] == nil {
						backends[i], hostsOf[i] = map[string]bool{}, map[string]bool{}
					}
					backends[i][f.backend] = true
					hostsOf[i][f.host] = true
					perHost[f.host]++
					f.c.Close()
				}
				mu.Unlock()
			}
		}
	})
	if len(failed) > 0 {
		t.Fatalf("%d of %d connections failed, first: %v", len(failed), clients*each, failed[0])
	}
	mismatches, spread := 0, 0
	for i := range clients {
		if len(backends[i]) != 1 {
			mismatches++
		}
		if len(hostsOf[i]) > 1 {
			spread++
		}
	}
	t.Logf("connections per host %v; %d of %d clients met more than one host; %d backend mismatches",
		perHost, spread, clients, mismatches)
	if len(perHost) != 3 {
		t.Errorf("traffic reached hosts %v, want all three", perHost)
	}
	if spread < clients/2 {
		t.Errorf("only %d clients met more than one host: the test would not see a mismatch", spread)
	}
	if mismatches != 0 {
		t.Errorf("%d clients reached different backends through different hosts", mismatches)
	}
}

// withdrawOnPoolLoss: host 1's backends drained through its API leave its
// pool without a backend; it is withdrawn, and new connections go to the
// others. Host 2 drained as a whole, likewise. What happens to the
// connections established through a withdrawn host is counted: the router
// sends their packets elsewhere, which resets them.
func (e *ecmp) withdrawOnPoolLoss(t *testing.T) {
	h1, h2 := e.hosts[0], e.hosts[1]
	est := e.openFlows(t, 60, 0)
	defer closeFlows(est)
	for i := 1; i <= ecmpBackends; i++ {
		h1.api(t, "PUT", fmt.Sprintf("/api/v1/pools/app/backends/10.31.0.%d:8080/state", i), `{"state":"drain"}`, nil)
	}
	took := e.waitNexthops([]int{2, 3}, ecmpHold)
	t.Logf("host 1 withdrawn %v after its pool lost its last backend", took.Round(time.Millisecond))
	e.noNewConnections(t, h1)
	on1, broken := 0, 0
	for _, f := range est {
		if f.host == h1.addr {
			on1++
			if f.alive() != nil {
				broken++
			}
		}
	}
	t.Logf("established through host 1 when it was withdrawn: %d, of which %d broke (the router moved their packets)", on1, broken)
	for i := 1; i <= ecmpBackends; i++ {
		h1.api(t, "PUT", fmt.Sprintf("/api/v1/pools/app/backends/10.31.0.%d:8080/state", i), `{"state":"enabled"}`, nil)
	}
	e.waitNexthops([]int{1, 2, 3}, 10*time.Second)

	// Through sluice ctl, which calls POST /api/v1/host/drain.
	if out, code := runSluice(t, "ctl", "-a", h2.sock, "drain-host"); code != 0 || !strings.Contains(out, "host drained") ||
		!strings.Contains(out, "10.99.0.10/32  false") {
		t.Fatalf("sluice ctl drain-host exited %d:\n%s", code, out)
	}
	took = e.waitNexthops([]int{1, 3}, ecmpHold)
	t.Logf("host 2 withdrawn %v after sluice ctl drain-host", took.Round(time.Millisecond))
	e.noNewConnections(t, h2)
	if out, code := runSluice(t, "ctl", "-a", h2.sock, "enable-host"); code != 0 {
		t.Fatalf("sluice ctl enable-host exited %d:\n%s", code, out)
	}
	e.waitNexthops([]int{1, 2, 3}, 10*time.Second)
	if out, _ := runSluice(t, "ctl", "-a", h2.sock, "bgp"); !regexp.MustCompile(`10\.20\.2\.1\s+65000\s+established`).MatchString(out) ||
		!strings.Contains(out, "10.99.0.10/32  true") {
		t.Errorf("sluice ctl bgp:\n%s", out)
	}
}

// noNewConnections opens 200 connections and fails t if one reaches h.
func (e *ecmp) noNewConnections(t *testing.T, h *ecmpHost) {
	t.Helper()
	fs := e.openFlows(t, 200, 2000)
	defer closeFlows(fs)
	for _, f := range fs {
		if f.host == h.addr {
			t.Fatalf("a new connection reached withdrawn host %d", h.n)
		}
	}
}

// openFlows opens n connections from clients first, first+1, ... and
// fails t if one fails.
func (e *ecmp) openFlows(t *testing.T, n, first int) []*flow {
	t.Helper()
	fs := make([]*flow, n)
	var mu sync.Mutex
	var errs []error
	e.inClient(10, func(w int) {
		for i := w; i < n; i += 10 {
			f, err := dialVIP(clientIP(first + i))
			mu.Lock()
			fs[i] = f
			if err != nil {
				errs = append(errs, err)
			}
			mu.Unlock()
		}
	})
	if len(errs) > 0 {
		closeFlows(fs)
		t.Fatalf("%d of %d connections failed, first: %v", len(errs), n, errs[0])
	}
	return fs
}

func closeFlows(fs []*flow) {
	for _, f := range fs {
		if f != nil {
			f.c.Close()
		}
	}
}

// rollingRestart restarts the three hosts one at a time under about 200
// new connections a second, each with connections of its own to drain:
// each withdraws first, waits withdraw_delay, then drains; no client may
// be refused.
func (e *ecmp) rollingRestart(t *testing.T) {
	const rate, workers = 200, 16
	stop := make(chan struct{})
	// Buffered: a worker that a busy machine wakes late takes the ticks
	// it missed, so the offered rate stays about rate.
	tick := make(chan struct{}, rate)
	var started, refused, otherErr atomic.Int64
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(tick)
		t := time.NewTicker(time.Second / rate)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				select {
				case tick <- struct{}{}:
				default: // a second behind: the test reports the rate below
				}
			}
		}
	})
	wg.Go(func() {
		e.inClient(workers, func(int) {
			for range tick {
				started.Add(1)
				f, err := dialVIP(clientIP(rand.IntN(1000)))
				if err == nil {
					f.c.Close()
					continue
				}
				if errors.Is(err, syscall.ECONNREFUSED) {
					refused.Add(1)
				} else {
					otherErr.Add(1)
				}
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	})
	begin := time.Now()
	for _, h := range e.hosts[:3] {
		// Long connections keep the stopping host draining (up to
		// drain_timeout, 3 s) after its listener has closed: without
		// the withdraw first, the route would still send it new ones,
		// and it would refuse them.
		held := e.openFlows(t, 30, 500+30*h.n)
		e.stop(h)
		closeFlows(held)
		e.start(h)
		e.waitNexthops([]int{1, 2, 3}, 20*time.Second)
	}
	close(stop)
	wg.Wait()
	secs := time.Since(begin).Seconds()
	t.Logf("rolling restart: %d connections in %.1f s (%.0f/s): %d refused, %d other errors (first: %v)",
		started.Load(), secs, float64(started.Load())/secs, refused.Load(), otherErr.Load(), firstErr)
	if refused.Load() != 0 {
		t.Errorf("%d connections refused during the rolling restart", refused.Load())
	}
	if otherErr.Load() != 0 {
		t.Errorf("%d connections failed during the rolling restart, first: %v", otherErr.Load(), firstErr)
	}
	// A busy machine (make test runs packages side by side) slows the
	// client; below a quarter of the rate the test would prove little.
	if r := float64(started.Load()) / secs; r < rate/4 {
		t.Errorf("the load ran at %.0f connections/s, want about %d", r, rate)
	}
}

// fourthHost counts the established connections that break when a
// fourth host is announced: with BIRD's plain multipath route (hash
// threshold), and with a resilient next-hop group installed by hand.
// Keep-alive probes (1 s, 1 s, 2) close the orphans the moved flows leave
// on the first three hosts.
func (e *ecmp) fourthHost(t *testing.T) {
	const n = 300
	h4 := e.addHost()
	plain := e.breakOnAdd(t, n, 3000, func() {
		e.start(h4)
		e.waitNexthops([]int{1, 2, 3, 4}, 20*time.Second)
	})
	e.stop(h4)
	e.waitNexthops([]int{1, 2, 3}, 10*time.Second)

	// The same change through a resilient group: buckets in use keep
	// their host until idle for idle_timer; a lower metric than BIRD's
	// (32) puts the group's route first.
	for i := 1; i <= 4; i++ {
		e.rt.Run(t, "ip", "nexthop", "add", "id", fmt.Sprint(i), "via", fmt.Sprintf("10.20.%d.2", i), "dev", fmt.Sprintf("h%d", i))
	}
	group := func(members string) []string {
		return []string{"id", "100", "group", members, "type", "resilient", "buckets", "128", "idle_timer", "60"}
	}
	e.rt.Run(t, append([]string{"ip", "nexthop", "add"}, group("1/2/3")...)...)
	e.rt.Run(t, "ip", "route", "add", ecmpVIP+"/32", "nhid", "100", "metric", "1")
	resilient := e.breakOnAdd(t, n, 3500, func() {
		e.start(h4)
		e.waitNexthops([]int{1, 2, 3, 4}, 20*time.Second)
		e.rt.Run(t, append([]string{"ip", "nexthop", "replace"}, group("1/2/3/4")...)...)
	})
	t.Logf("adding a fourth host broke %d of %d established connections with plain ECMP, %d with a resilient next-hop group",
		plain, n, resilient)
	if plain == 0 {
		t.Errorf("plain ECMP broke no connection: the test did not move flows")
	}
	if resilient >= plain {
		t.Errorf("the resilient group broke %d connections, plain ECMP %d", resilient, plain)
	}
	e.rt.Run(t, "ip", "route", "del", ecmpVIP+"/32", "nhid", "100")
	e.stop(h4)
}

// breakOnAdd opens n connections, runs add, and returns how many no longer
// echo. It then checks that the hosts' live connections come down to the
// survivors within the keep-alive probe time: no orphan is left holding a
// backend connection.
func (e *ecmp) breakOnAdd(t *testing.T, n, first int, add func()) int {
	t.Helper()
	fs := e.openFlows(t, n, first)
	defer closeFlows(fs)
	add()
	broken := 0
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, f := range fs {
		wg.Go(func() {
			if f.alive() != nil {
				mu.Lock()
				broken++
				mu.Unlock()
				f.c.Close()
			}
		})
	}
	wg.Wait()
	start := time.Now()
	for {
		var live int64
		for _, h := range e.hosts {
			if h.proc != nil && !h.exited() {
				live += h.active(t)
			}
		}
		if live == int64(n-broken) {
			t.Logf("orphans closed %v after the check (keep-alive 1 s + 2 x 1 s)", time.Since(start).Round(100*time.Millisecond))
			break
		}
		if time.Since(start) > 6*time.Second {
			t.Fatalf("%d live connections on the hosts 6 s on, want the %d that survived", live, n-broken)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return broken
}

// exited reports whether the host's sluice has exited.
func (h *ecmpHost) exited() bool {
	select {
	case err := <-h.proc.done:
		h.proc.done <- err
		return true
	default:
		return false
	}
}

// reloadAnnounce drops host 3's announce line and reloads (SIGHUP): its
// route goes; put back, it returns, with no restart of the sessions.
func (e *ecmp) reloadAnnounce(t *testing.T) {
	h := e.hosts[2]
	orig, err := os.ReadFile(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	line := fmt.Sprintf("announce = [\"%s/32\"]\n", ecmpVIP)
	if !strings.Contains(string(orig), line) {
		t.Fatalf("no %q in host 3's file", line)
	}
	reload := func(text string) {
		t.Helper()
		if err := os.WriteFile(h.cfg, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		h.proc.cmd.Process.Signal(syscall.SIGHUP)
	}
	reload(strings.Replace(string(orig), line, "", 1))
	took := e.waitNexthops([]int{1, 2}, 10*time.Second)
	t.Logf("host 3 withdrawn %v after a reload without its announce line", took.Round(time.Millisecond))
	// The router can see the withdraw before sluice's log line about it
	// reaches the test through the pipe.
	waitFor(t, 5*time.Second, "a withdraw with reason=removed in host 3's log", func() bool {
		return strings.Contains(h.proc.out.String(), "reason=removed")
	})
	reload(string(orig))
	e.waitNexthops([]int{1, 2, 3}, 10*time.Second)
	if n := strings.Count(h.proc.out.String(), "state=established"); n != 1 {
		t.Errorf("host 3's session came up %d times; reloads must not restart it", n)
	}
}
