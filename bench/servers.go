package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"sluice/internal/dbproc"
)

// The database servers the real-client scenarios drive. internal/dbtest
// starts the same servers for tests, through testing.TB (a failure ends the
// test) and with a test's settings (SCRAM logins, replicas); the bench is a
// program and wants a benchmark's settings, so it has its own small
// starters here. Running the processes (their own process group, a
// parent-death signal, a port taken meanwhile tried again, readiness,
// stopping with their children) is internal/dbproc's, shared by both.

// dbServer is a PostgreSQL or Redis server the bench started and owns:
// Close stops it and removes its files.
type dbServer struct {
	name string // "postgres" or "redis": the relay it is reached by
	addr string // host:port on loopback
	dir  string // its files; removed by Close
	proc *dbproc.Process
}

// Close stops the server (its stop signal, then SIGKILL to its process
// group after dbproc.StopTimeout) and removes its directory.
func (s *dbServer) Close() error {
	err := s.proc.Stop()
	// Postgres's children, or anything that outlived the server.
	s.proc.Kill()
	if rerr := os.RemoveAll(s.dir); rerr != nil && err == nil {
		err = fmt.Errorf("removing %s files: %w", s.name, rerr)
	}
	return err
}

// startDB runs a server on a free loopback port, another one if that port
// is taken before the server binds it: args gives its arguments for a
// port, ready says whether the server at an address answers. On failure
// it stops the server but leaves dir to the caller.
func startDB(ctx context.Context, name, dir string, o dbproc.Options, ready func(ctx context.Context, addr string) error,
	bin string, args func(port string) []string) (*dbServer, error) {
	o.Dir = dir
	var s *dbServer
	err := dbproc.WithFreePort(func(port uint16) error {
		p := strconv.Itoa(int(port))
		addr := net.JoinHostPort("127.0.0.1", p)
		proc, err := dbproc.Start(name, o, bin, args(p)...)
		if err != nil {
			return err
		}
		err = proc.WaitReady(ctx, func(ctx context.Context) error { return ready(ctx, addr) })
		if err != nil {
			proc.Stop()
			proc.Kill()
			return err
		}
		s = &dbServer{name: name, addr: addr, dir: dir, proc: proc}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	return s, nil
}

// startRedis starts a redis-server without persistence on a free loopback
// port.
func startRedis(ctx context.Context, bin string) (*dbServer, error) {
	dir, err := os.MkdirTemp("", "sluice-bench-redis-")
	if err != nil {
		return nil, fmt.Errorf("starting redis: %w", err)
	}
	s, err := startDB(ctx, "redis", dir, dbproc.Options{StopSignal: syscall.SIGTERM}, redisPing, bin,
		func(port string) []string {
			return []string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
				"--dir", dir, "--daemonize", "no"}
		})
	if err != nil {
		os.RemoveAll(dir)
	}
	return s, err
}

// redisPing sends PING and expects +PONG.
func redisPing(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("redis answered PING with %q", line)
	}
	return nil
}

// Postgres settings for the bench: the data is thrown away, so nothing is
// synced; trust on loopback, because a password exchange per connection
// (SCRAM's 4096 PBKDF2 rounds on both sides) would make the new-connection
// run measure hashing, not the proxy.
var pgSettings = []string{
	"-c", "listen_addresses=127.0.0.1",
	"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
	"-c", "max_connections=100",
}

// pgbenchScale is pgbench -i's scale: 100,000 accounts, which fit in
// shared_buffers, so select-only transactions never wait for the disk.
const pgbenchScale = "1"

// startPostgres initializes a cluster owned by the postgres user (the
// server refuses to run as root), starts it on a free loopback port with
// trust authentication and fills pgbench's tables.
func startPostgres(ctx context.Context, tools pgTools) (*dbServer, error) {
	cred, err := dbproc.PostgresCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "sluice-bench-pg-")
	if err != nil {
		return nil, fmt.Errorf("starting postgres: %w", err)
	}
	s, err := startPostgresIn(ctx, tools, dir, cred)
	if err != nil {
		os.RemoveAll(dir)
	}
	return s, err
}

func startPostgresIn(ctx context.Context, tools pgTools, dir string, cred *syscall.Credential) (*dbServer, error) {
	if err := dbproc.ChownPostgres(dir); err != nil {
		return nil, fmt.Errorf("starting postgres: %w", err)
	}
	data := filepath.Join(dir, "data")
	initdb := exec.CommandContext(ctx, tools.bin("initdb"), "-D", data, "-U", "postgres", "--auth=trust",
		"--no-sync", "--no-instructions", "-E", "UTF8", "--locale=C")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("starting postgres: initdb: %w: %s", err, lastLines(out, 5))
	}
	// SIGINT is a fast shutdown: sessions are ended, nothing is kept.
	o := dbproc.Options{AsPostgres: true, StopSignal: syscall.SIGINT}
	ready := func(ctx context.Context, addr string) error {
		host, port, _ := net.SplitHostPort(addr)
		return exec.CommandContext(ctx, tools.bin("pg_isready"), "-q", "-h", host, "-p", port).Run()
	}
	s, err := startDB(ctx, "postgres", dir, o, ready, tools.bin("postgres"), func(port string) []string {
		return append([]string{"-D", data, "-p", port, "-k", dir}, pgSettings...)
	})
	if err != nil {
		return nil, err
	}
	ini := exec.CommandContext(ctx, tools.bin("pgbench"), "-i", "-q", "-s", pgbenchScale)
	ini.Env = append(os.Environ(), pgEnv(s.addr)...)
	if out, err := ini.CombinedOutput(); err != nil {
		s.proc.Stop()
		s.proc.Kill()
		return nil, fmt.Errorf("starting postgres: pgbench -i: %w: %s", err, lastLines(out, 5))
	}
	return s, nil
}

// pgEnv points libpq's programs at addr as the superuser, without TLS or
// GSSAPI negotiation: a proxy would otherwise carry an extra round trip
// per connection that says nothing about it.
func pgEnv(addr string) []string {
	host, port, _ := net.SplitHostPort(addr)
	return []string{"PGHOST=" + host, "PGPORT=" + port, "PGUSER=postgres", "PGDATABASE=postgres",
		"PGSSLMODE=disable", "PGGSSENCMODE=disable", "PGCONNECT_TIMEOUT=10"}
}

// pgTools is the directory of PostgreSQL's programs.
type pgTools string

func (d pgTools) bin(name string) string { return filepath.Join(string(d), name) }

// errNoPostgres says PostgreSQL's programs are not installed.
var errNoPostgres = errors.New("no /usr/lib/postgresql/*/bin with postgres, initdb and pgbench")

// findPgTools finds PostgreSQL's programs: Debian keeps them in
// /usr/lib/postgresql/VERSION/bin, off PATH; the newest version wins.
func findPgTools() (pgTools, error) {
	for _, d := range dbproc.PostgresBinDirs() {
		ok := true
		for _, p := range []string{"postgres", "initdb", "pg_isready", "pgbench"} {
			if _, err := os.Stat(filepath.Join(d, p)); err != nil {
				ok = false
			}
		}
		if ok {
			return pgTools(d), nil
		}
	}
	return "", errNoPostgres
}
