package main

// End-to-end tests of issue 4 with real database servers (internal/dbtest) behind the
// built binary: a role-checking pool follows its primary through a failover. This file
// holds what they share (drain_test.go too), and Redis; db_sql_test.go has PostgreSQL
// and MariaDB.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"sluice/internal/dbtest"
)

// The database pools' checks: short intervals so that a failover is seen within a
// second, and no jitter, so that fall x interval + timeout bounds it exactly. The
// timeout is generous: a login check (SCRAM, a new server process) took over 150 ms
// on two cores busy with pgbench, and three such checks in a row marked a healthy
// server down.
const (
	checkInterval        = 300 * time.Millisecond
	checkTimeout         = 300 * time.Millisecond
	checkRise, checkFall = 2, 3
)

// followBound is how soon new connections must follow a change of roles, as issue 4
// says: fall x interval + timeout for the old backend to go down. Rise is less than
// fall, so the new one is up by then too.
const followBound = checkFall*checkInterval + checkTimeout

// followSlack allows for scheduling on two shared cores while other test packages run;
// followSettle is how long connections must then keep reaching the new backend.
const (
	followSlack  = 400 * time.Millisecond
	followSettle = 500 * time.Millisecond
)

// dbPool is one listener and its role-checking pool in a test's configuration.
type dbPool struct {
	name, bind string
	kind, role string
	keys       string // more keys of the health table, such as user and password
	backends   []netip.AddrPort
	// slow, where a test does not measure failover time and only needs
	// healthy servers to stay up under load, checks every second with a
	// timeout of a second.
	slow bool
}

// dbConfig returns a configuration file with each pool behind its own listener.
func dbConfig(pools ...dbPool) string {
	var b strings.Builder
	for _, p := range pools {
		fmt.Fprintf(&b, "[listeners.%s]\nbind = %q\npool = %[1]q\nsockets = 1\n\n", p.name, p.bind)
		fmt.Fprintf(&b, "[pools.%s]\n[pools.%[1]s.health]\nkind = %q\n", p.name, p.kind)
		if p.role != "" {
			fmt.Fprintf(&b, "role = %q\n", p.role)
		}
		interval, timeout := checkInterval, checkTimeout
		if p.slow {
			interval, timeout = time.Second, time.Second
		}
		fmt.Fprintf(&b, "interval = %q\ntimeout = %q\njitter = \"0s\"\nrise = %d\nfall = %d\n%s\n",
			interval, timeout, checkRise, checkFall, p.keys)
		for _, a := range p.backends {
			fmt.Fprintf(&b, "[[pools.%s.backends]]\naddress = %q\n", p.name, a)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// startDBSluice runs the binary with cfg, waits until every listener of pools is
// serving (after the first checks), and logs sluice's output if the test fails.
func startDBSluice(t *testing.T, cfg string, pools ...string) *process {
	t.Helper()
	p := startSluice(t, nil, "-c", writeFile(t, cfg))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sluice output:\n%s", p.out)
		}
	})
	for _, name := range pools {
		p.waitOutput(t, "msg=listening listener="+name)
	}
	return p
}

// reached is the server a connection through sluice reached, as that server says.
type reached struct {
	port    uint16 // the port the server listens on
	primary bool
}

func (r reached) String() string {
	if r.primary {
		return fmt.Sprintf("primary on port %d", r.port)
	}
	return fmt.Sprintf("replica on port %d", r.port)
}

// identify opens a new connection to addr, as a client would, and asks the server
// which one it is.
type identify func(ctx context.Context, addr string) (reached, error)

// reach runs id with a deadline.
func reach(id identify, addr string) (reached, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return id(ctx, addr)
}

// wantAll checks that n new connections through addr all reach want.
func wantAll(t *testing.T, id identify, addr string, want reached, n int) {
	t.Helper()
	for i := range n {
		if got, err := reach(id, addr); err != nil || got != want {
			t.Fatalf("connection %d through %s reached %v (%v), want %v", i, addr, got, err, want)
		}
	}
}

// watch is what follow checks of one listener: new connections through addr must
// reach want.
type watch struct {
	addr string
	want reached
	id   identify

	last   time.Time // when the last connection that missed want was opened
	missed string    // what it reached instead
	good   int       // connections that reached want after the bound
}

// follow opens new connections through each watch's listener in turn until
// followSettle past since + followBound + followSlack, and checks that every one
// opened after that bound reached its want. It logs when each listener's connections
// started to.
func follow(t *testing.T, since time.Time, ws ...*watch) {
	t.Helper()
	deadline := since.Add(followBound + followSlack)
	for end := deadline.Add(followSettle); time.Now().Before(end); {
		failed := false
		for _, w := range ws {
			// A connection is picked as it is accepted, just after it is opened.
			opened := time.Now()
			got, err := reach(w.id, w.addr)
			switch {
			case err != nil:
				w.last, w.missed, failed = opened, err.Error(), true
			case got != w.want:
				w.last, w.missed = opened, got.String()
			case opened.After(deadline):
				w.good++
			}
		}
		if failed {
			time.Sleep(10 * time.Millisecond) // refused at once: don't spin
		}
	}
	for _, w := range ws {
		took := max(w.last.Sub(since), 0)
		t.Logf("new connections through %s reached the %v %v after the change (bound %v)",
			w.addr, w.want, took, followBound)
		if w.last.After(deadline) {
			t.Errorf("a connection through %s opened %v after the change reached %s, want the %v from %v on",
				w.addr, took, w.missed, w.want, followBound)
		}
		if w.good == 0 {
			t.Errorf("no connection through %s reached the %v after %v", w.addr, w.want, followBound+followSlack)
		}
	}
}

// portString returns the port of a host:port address.
func portString(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// redisIdentify asks with INFO which Redis a connection reached, after AUTH if
// password is set: tcp_port says which server, role whether it is a primary.
func redisIdentify(password string) identify {
	return func(ctx context.Context, addr string) (reached, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return reached{}, err
		}
		defer c.Close()
		dl, _ := ctx.Deadline()
		c.SetDeadline(dl)
		cmds := "INFO server\r\nINFO replication\r\n"
		if password != "" {
			cmds = "AUTH " + password + "\r\n" + cmds
		}
		if _, err := io.WriteString(c, cmds); err != nil {
			return reached{}, err
		}
		r := bufio.NewReader(c)
		if password != "" {
			if line, err := r.ReadString('\n'); err != nil || line != "+OK\r\n" {
				return reached{}, fmt.Errorf("redis AUTH: %q, %v", line, err)
			}
		}
		var info string
		for range 2 {
			s, err := readBulk(r)
			if err != nil {
				return reached{}, err
			}
			info += s
		}
		port, err := strconv.ParseUint(infoField(info, "tcp_port"), 10, 16)
		if err != nil {
			return reached{}, fmt.Errorf("redis INFO without tcp_port: %q", info)
		}
		return reached{port: uint16(port), primary: infoField(info, "role") == "master"}, nil
	}
}

// readBulk reads one RESP bulk string reply.
func readBulk(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("reading a redis reply: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "$")))
	if line[0] != '$' || err != nil || n < 0 {
		return "", fmt.Errorf("redis reply %q, want a bulk string", line)
	}
	b := make([]byte, n+2)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("reading a redis reply: %w", err)
	}
	return string(b[:n]), nil
}

// infoField returns the value of key in INFO's key:value lines.
func infoField(info, key string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestRedisPrimaryFollowsReplicaOf runs a Redis primary and its replica behind a
// role = "primary" pool and a role = "replica" pool, swaps their roles with REPLICAOF,
// and checks that new connections follow within fall x interval + timeout.
func TestRedisPrimaryFollowsReplicaOf(t *testing.T) {
	const password = "sluice-test"
	primary := dbtest.StartRedis(t, dbtest.RedisOptions{Password: password})
	replica := dbtest.StartRedis(t, dbtest.RedisOptions{Password: password, ReplicaOf: primary})
	rw, ro := freePort(t), freePort(t)
	both := []netip.AddrPort{primary.Addr, replica.Addr}
	keys := fmt.Sprintf("password = %q\n", password)
	startDBSluice(t, dbConfig(
		dbPool{name: "rw", bind: rw, kind: "redis", role: "primary", keys: keys, backends: both},
		dbPool{name: "ro", bind: ro, kind: "redis", role: "replica", keys: keys, backends: both},
	), "rw", "ro")
	id := redisIdentify(password)
	wantAll(t, id, rw, reached{primary.Addr.Port(), true}, 6)
	wantAll(t, id, ro, reached{replica.Addr.Port(), false}, 6)

	replica.Promote(t)
	primary.Do(t, "REPLICAOF", "127.0.0.1", strconv.Itoa(int(replica.Addr.Port())))
	swapped := time.Now()
	follow(t, swapped, &watch{addr: rw, want: reached{replica.Addr.Port(), true}, id: id})
	// A replica answers LOADING (and fails its check) until its first sync is done.
	primary.WaitReplicaLinked(t)
	follow(t, time.Now(), &watch{addr: ro, want: reached{primary.Addr.Port(), false}, id: id})
}
