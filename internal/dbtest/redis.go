package dbtest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sluice/internal/dbproc"
)

// RedisOptions configure StartRedis. The zero value is a primary without a password.
type RedisOptions struct {
	// Password is set as requirepass; empty leaves the server open.
	Password string
	// ReplicaOf, when set, starts the server as its replica and waits until the link
	// is up.
	ReplicaOf *Redis
}

// Redis is a running redis-server.
type Redis struct {
	Addr     netip.AddrPort
	Password string
	srv      *dbproc.Process
}

// StartRedis starts a redis-server on a free loopback port without persistence and
// stops it when t ends.
func StartRedis(t testing.TB, o RedisOptions) *Redis {
	t.Helper()
	bin, err := lookBin("redis-server")
	if err != nil {
		t.Fatal(err)
	}
	dir := tempDir(t, "redis", false)
	r := &Redis{Password: o.Password}
	err = dbproc.WithFreePort(func(port uint16) error {
		args := []string{"--port", strconv.Itoa(int(port)), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no",
			// A primary waits 5s by default for more replicas before a full sync.
			"--repl-diskless-sync-delay", "0"}
		if o.Password != "" {
			args = append(args, "--requirepass", o.Password)
		}
		// The primary's password, else our own: after a swap of roles this server
		// replicates from one that tests start with the same password.
		masterauth := o.Password
		if p := o.ReplicaOf; p != nil {
			args = append(args, "--replicaof", "127.0.0.1", strconv.Itoa(int(p.Addr.Port())))
			if p.Password != "" {
				masterauth = p.Password
			}
		}
		if masterauth != "" {
			args = append(args, "--masterauth", masterauth)
		}
		srv, err := dbproc.Start("redis", dbproc.Options{Dir: dir, StopSignal: syscall.SIGTERM}, bin, args...)
		if err != nil {
			return err
		}
		cleanup(t, srv)
		r.Addr, r.srv = loopback(port), srv
		return srv.WaitReady(context.Background(), r.ping)
	})
	if err != nil {
		t.Fatal(err)
	}
	if o.ReplicaOf != nil {
		r.WaitReplicaLinked(t)
	}
	return r
}

// ping sends PING (after AUTH) on a raw connection and expects +PONG: readiness without
// a dependency on redis-cli.
func (r *Redis) ping(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", r.Addr.String())
	if err != nil {
		return err
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	cmd := "PING\r\n"
	if r.Password != "" {
		cmd = "AUTH " + r.Password + "\r\n" + cmd
	}
	if _, err := conn.Write([]byte(cmd)); err != nil {
		return err
	}
	br := bufio.NewReader(conn)
	for range strings.Count(cmd, "\n") {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if line[0] == '-' {
			return fmt.Errorf("redis: %s", strings.TrimSpace(line[1:]))
		}
	}
	return nil
}

// Do runs one command with redis-cli and returns its output, trimmed. Error replies
// fail t.
func (r *Redis) Do(t testing.TB, args ...string) string {
	t.Helper()
	bin, err := lookBin("redis-cli")
	if err != nil {
		t.Fatal(err)
	}
	// -e: exit 1 on an error reply.
	cli := []string{"-e", "-h", "127.0.0.1", "-p", strconv.Itoa(int(r.Addr.Port()))}
	if r.Password != "" {
		cli = append(cli, "-a", r.Password, "--no-auth-warning")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append(cli, args...)...).CombinedOutput()
	s := strings.TrimSpace(string(out))
	if err != nil {
		t.Fatalf("redis-cli %s on %v: %v: %s", strings.Join(args, " "), r.Addr, err, s)
	}
	return s
}

// ReplicaOf makes r a replica of primary and waits until the link is up.
func (r *Redis) ReplicaOf(t testing.TB, primary *Redis) {
	t.Helper()
	r.Do(t, "REPLICAOF", "127.0.0.1", strconv.Itoa(int(primary.Addr.Port())))
	r.WaitReplicaLinked(t)
}

// Promote makes r a primary (REPLICAOF NO ONE).
func (r *Redis) Promote(t testing.TB) {
	t.Helper()
	r.Do(t, "REPLICAOF", "NO", "ONE")
}

// WaitReplicaLinked waits until r, a replica, reports master_link_status:up.
func (r *Redis) WaitReplicaLinked(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(dbproc.ReadyTimeout)
	for {
		info := r.Do(t, "INFO", "replication")
		if strings.Contains(info, "master_link_status:up") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis %v: replication link not up after %v:\n%s", r.Addr, dbproc.ReadyTimeout, info)
		}
		time.Sleep(pollEvery)
	}
}

// Stop shuts the server down now, for tests of a backend going away. Stopping twice is
// fine.
func (r *Redis) Stop(t testing.TB) {
	t.Helper()
	if err := r.srv.Stop(); err != nil {
		t.Error(err)
	}
}
