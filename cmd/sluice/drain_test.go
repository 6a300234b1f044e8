package main

// Real clients (redis-benchmark, pgbench) through sluice while a backend is drained
// mid-run. sluice has no way yet to drain a backend from outside (no admin socket, no
// reload signal: ARCHITECTURE.md, "Where later work slots in"), so these tests run the
// configuration in process, as sluice run does, and drain with pool.SetAdmin, which is
// what that interface will call.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/config"
	"sluice/internal/dbtest"
	"sluice/internal/pool"
)

// inProcess is a configuration running in the test process. Its log is JSON lines.
type inProcess struct {
	in   *daemon
	log  *lockedBuffer
	once sync.Once
}

// startInProcess loads text as sluice run would and serves it until the test ends.
func startInProcess(t *testing.T, text string) *inProcess {
	t.Helper()
	return startInProcessFile(t, "[log]\nformat = \"json\"\n\n"+text)
}

// startInProcessFile is startInProcess for a text with its own [log] table, which
// must say format = "json".
func startInProcessFile(t *testing.T, text string) *inProcess {
	t.Helper()
	cfg, err := config.Load(writeFile(t, text))
	if err != nil {
		t.Fatal(err)
	}
	s := &inProcess{log: &lockedBuffer{}}
	if s.in, err = start(cfg, newLogger(cfg.Log, s.log)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.stop(t)
		if t.Failed() {
			t.Logf("sluice log:\n%s", s.log)
		}
	})
	return s
}

// stop drains and stops the instance, once; every connection has been logged after it.
func (s *inProcess) stop(t *testing.T) {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.in.shutdown(ctx); err != nil {
			t.Errorf("shutting down: %v", err)
		}
	})
}

// pool returns the pool named name.
func (s *inProcess) pool(t *testing.T, name string) *pool.Pool {
	t.Helper()
	s.in.mu.Lock()
	p := s.in.pools[name]
	s.in.mu.Unlock()
	if p == nil {
		t.Fatalf("no pool %q", name)
	}
	return p
}

// connLine is a connection's log line.
type connLine struct {
	Msg      string        `json:"msg"`
	Time     time.Time     `json:"time"`
	Listener string        `json:"listener"`
	Backend  string        `json:"backend"`
	End      string        `json:"end"`
	Error    string        `json:"error"`
	Duration time.Duration `json:"duration"` // slog's JSON handler writes nanoseconds
}

// opened is when sluice accepted the connection.
func (c connLine) opened() time.Time { return c.Time.Add(-c.Duration) }

// conns returns the log lines of the connections that have ended.
func (s *inProcess) conns(t *testing.T) []connLine {
	t.Helper()
	var lines []connLine
	sc := bufio.NewScanner(strings.NewReader(s.log.String()))
	for sc.Scan() {
		var l connLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if l.Msg == "connection" {
			lines = append(lines, l)
		}
	}
	return lines
}

// checkDrained checks the connection lines of a run in which drained was drained at
// drainedAt: each ended cleanly, drained had connections before, and every connection
// opened after went to other. It returns how many did.
func checkDrained(t *testing.T, conns []connLine, drainedAt time.Time, drained, other string) int {
	t.Helper()
	// The log's time is taken a moment after the duration: a margin, so that a
	// connection opened just before the drain is not counted as after it.
	after := drainedAt.Add(20 * time.Millisecond)
	before, moved := 0, 0
	var unclean, misrouted []string
	for _, c := range conns {
		// PostgreSQL closes its end on the client's Terminate message, and its FIN
		// may come first: either way both sides finished cleanly.
		if c.End != "client_closed" && c.End != "backend_closed" {
			unclean = append(unclean, fmt.Sprintf("to %s ended %s (%s)", c.Backend, c.End, c.Error))
		}
		switch {
		case c.opened().Before(drainedAt) && c.Backend == drained:
			before++
		case c.opened().After(after):
			moved++
			if c.Backend != other {
				misrouted = append(misrouted, fmt.Sprintf("opened %v after the drain went to %s",
					c.opened().Sub(drainedAt), c.Backend))
			}
		}
	}
	if len(unclean) > 0 {
		t.Errorf("%d of %d connections did not end cleanly; the first %s", len(unclean), len(conns), unclean[0])
	}
	if len(misrouted) > 0 {
		t.Errorf("%d of %d connections opened after the drain did not go to %s; the first %s",
			len(misrouted), moved, other, misrouted[0])
	}
	if before == 0 || moved == 0 {
		t.Errorf("%d connections to %s before the drain and %d after it: want some of both", before, drained, moved)
	}
	return moved
}

// client is a client program run by a test.
type client struct {
	name string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{} // closed when it has exited; err is set before
	err  error
}

// startClient runs a client program with extra environment, killed if it runs for
// over a minute (redis-benchmark spins for ever when it cannot connect) or outlives
// the test.
func startClient(t *testing.T, env []string, bin string, args ...string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	c := &client{name: bin, cmd: exec.CommandContext(ctx, bin, args...), out: &lockedBuffer{},
		done: make(chan struct{})}
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-c.done
	})
	return c
}

// running reports whether the client has not exited yet.
func (c *client) running() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// wait waits for the client to exit and checks that it succeeded without reporting
// an error.
func (c *client) wait(t *testing.T) {
	t.Helper()
	<-c.done
	out := c.out.String()
	if c.err != nil || strings.Contains(strings.ToLower(out), "error") || strings.Contains(out, "abort") {
		t.Errorf("%s %s: %v; output:\n%s", c.name, strings.Join(c.cmd.Args[1:], " "), c.err, out)
	}
}

// waitFor polls cond until it holds, failing t after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// calls returns how many times r has run command, from INFO commandstats.
func calls(t *testing.T, r *dbtest.Redis, command string) int {
	t.Helper()
	stat := infoField(r.Do(t, "INFO", "commandstats"), "cmdstat_"+command)
	n, _ := strconv.Atoi(strings.TrimPrefix(strings.Split(stat, ",")[0], "calls="))
	return n
}

// TestRedisBenchmarkUnderDrain runs redis-benchmark through sluice against two Redis
// servers and drains one mid-run: one run reconnects for every request (-k 0), and
// its new connections all go to the other server from the drain on; the other keeps
// its connections, and those to the drained server go on working. Neither sees an
// error.
func TestRedisBenchmarkUnderDrain(t *testing.T) {
	a, b := dbtest.StartRedis(t, dbtest.RedisOptions{}), dbtest.StartRedis(t, dbtest.RedisOptions{})
	addr := freePort(t)
	s := startInProcess(t, dbConfig(dbPool{name: "cache", bind: addr, kind: "redis", slow: true,
		backends: []netip.AddrPort{a.Addr, b.Addr}}))
	bench := func(args ...string) *client {
		return startClient(t, nil, "redis-benchmark",
			append([]string{"-h", "127.0.0.1", "-p", portString(addr), "-q", "-r", "1000"}, args...)...)
	}
	steady := bench("-c", "4", "-n", "60000", "-t", "get")
	waitFor(t, 20*time.Second, "GETs on both servers", func() bool {
		return calls(t, a, "get") >= 1000 && calls(t, b, "get") >= 1000
	})
	churn := bench("-k", "0", "-c", "4", "-n", "6000", "-t", "set")
	waitFor(t, 20*time.Second, "SETs on both servers", func() bool {
		return calls(t, a, "set") >= 100 && calls(t, b, "set") >= 100
	})
	if !steady.running() || !churn.running() {
		t.Fatal("redis-benchmark ended before the drain: raise -n")
	}
	p := s.pool(t, "cache")
	drainedAt := time.Now()
	p.SetAdmin(p.Backends()[0], pool.Drain)
	gets := calls(t, a, "get")
	waitFor(t, 20*time.Second, "GETs on the drained server's open connections", func() bool {
		return calls(t, a, "get") >= gets+1000
	})
	if !churn.running() {
		t.Error("the reconnecting redis-benchmark ended before the drained server's connections had been used again: raise its -n")
	}
	steady.wait(t)
	churn.wait(t)
	s.stop(t)
	moved := checkDrained(t, s.conns(t), drainedAt, a.Addr.String(), b.Addr.String())
	t.Logf("%d GETs on the drained server's connections after the drain; %d new connections after it, all to the other",
		calls(t, a, "get")-gets, moved)
}

// TestPgbenchUnderDrain runs pgbench (select-only, so that the hot standby serves it
// too) through sluice against a PostgreSQL primary and its standby and drains the
// standby mid-run: one run connects for every transaction (-C), and its new
// connections all go to the primary from the drain on; the other keeps its
// connections, and those to the standby go on running queries. Neither sees an error.
func TestPgbenchUnderDrain(t *testing.T) {
	primary := dbtest.StartPostgres(t)
	pgbench := pgbenchInit(t, primary)
	standby := dbtest.StartStandby(t, primary) // with pgbench's tables
	addr := freePort(t)
	s := startInProcess(t, dbConfig(dbPool{name: "pg", bind: addr, kind: "postgres", slow: true,
		keys:     fmt.Sprintf("user = %q\npassword = %q\n", primary.User, primary.Password),
		backends: []netip.AddrPort{primary.Addr, standby.Addr}}))
	// Through sluice: the last PGHOST and PGPORT win.
	env := append(primary.Env(), "PGHOST=127.0.0.1", "PGPORT="+portString(addr))
	run := func(app string, args ...string) *client {
		return startClient(t, append(env, "PGAPPNAME="+app), pgbench,
			append([]string{"-n", "-S", "-j", "2", "-T", "8"}, args...)...)
	}
	started := time.Now()
	steady := run("steady", "-c", "4")
	waitFor(t, 20*time.Second, "steady pgbench sessions on both servers", func() bool {
		return querying(t, primary, "steady", started) > 0 && querying(t, standby, "steady", started) > 0
	})
	churn := run("churn", "-C", "-c", "2")
	waitFor(t, 20*time.Second, "reconnecting pgbench sessions on both servers", func() bool {
		n := map[string]int{}
		for _, c := range s.conns(t) {
			n[c.Backend]++
		}
		return n[primary.Addr.String()] >= 10 && n[standby.Addr.String()] >= 10
	})
	if !steady.running() || !churn.running() {
		t.Fatal("pgbench ended before the drain: raise -T")
	}
	p := s.pool(t, "pg")
	drainedAt := time.Now()
	p.SetAdmin(p.Backends()[1], pool.Drain)
	waitFor(t, 10*time.Second, "queries on the standby's open connections after the drain", func() bool {
		return querying(t, standby, "steady", drainedAt) > 0
	})
	steady.wait(t)
	churn.wait(t)
	s.stop(t)
	moved := checkDrained(t, s.conns(t), drainedAt, standby.Addr.String(), primary.Addr.String())
	t.Logf("%d new connections after the drain, all to the primary", moved)
}

// pgbenchInit makes pgbench's tables on pg and returns pgbench's path.
func pgbenchInit(t *testing.T, pg *dbtest.Postgres) string {
	t.Helper()
	pgbench := dbtest.PostgresBin(t, "pgbench")
	init := exec.Command(pgbench, "-i", "-q", "-s", "1")
	init.Env = append(os.Environ(), pg.Env()...)
	if out, err := init.CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	return pgbench
}

// querying returns how many of pg's sessions of application app started a query
// after since.
func querying(t *testing.T, pg *dbtest.Postgres, app string, since time.Time) int {
	t.Helper()
	n, err := strconv.Atoi(pg.QueryString(t, "SELECT count(*)::text FROM pg_stat_activity "+
		"WHERE application_name = $1 AND query_start > $2", app, since))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
