package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The database servers the real-client scenarios drive. internal/dbtest
// starts the same servers for tests, but through testing.TB (a failure
// ends the test); the bench is a program, so it has its own small
// starter here, with the settings a benchmark wants rather than a test's.

// dbServer is a PostgreSQL or Redis server the bench started and owns:
// Close stops it and removes its files.
type dbServer struct {
	name    string // "postgres" or "redis": the relay it is reached by
	addr    string // host:port on loopback
	dir     string // its files; removed by Close
	cmd     *exec.Cmd
	stopSig syscall.Signal
	logPath string
	done    chan struct{} // closed when the process has been waited for
	waitErr error
}

// dbReadyTimeout bounds a server's start; generous, as the machine is
// shared.
const dbReadyTimeout = 60 * time.Second

// Close stops the server (its stop signal, then SIGKILL to its process
// group after ten seconds) and removes its directory.
func (s *dbServer) Close() error {
	syscall.Kill(s.cmd.Process.Pid, s.stopSig)
	var err error
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		err = fmt.Errorf("stopping %s: killed after 10s", s.name)
	}
	// Postgres's children, or anything that outlived the server.
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
	if rerr := os.RemoveAll(s.dir); rerr != nil && err == nil {
		err = fmt.Errorf("removing %s files: %w", s.name, rerr)
	}
	return err
}

// startDB runs argv as a server in its own process group, its output in
// dir, and waits until ready succeeds.
func startDB(ctx context.Context, name, dir, addr string, cred *syscall.Credential, stopSig syscall.Signal,
	ready func(ctx context.Context) error, argv ...string) (*dbServer, error) {
	s := &dbServer{name: name, addr: addr, dir: dir, stopSig: stopSig,
		logPath: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	logf, err := os.Create(s.logPath)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	defer logf.Close() // the child has its own copy
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Dir, s.cmd.Stdout, s.cmd.Stderr = dir, logf, logf
	// Pdeathsig is applied after the credentials change in the child, so
	// it holds for a server run as postgres too.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { // joined by Close, which waits on done
		s.waitErr = s.cmd.Wait()
		close(s.done)
	}()
	deadline := time.Now().Add(dbReadyTimeout)
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := ready(rctx)
		cancel()
		if err == nil {
			return s, nil
		}
		select {
		case <-s.done:
			err = fmt.Errorf("starting %s: exited (%v): %s", name, s.waitErr, tail(s.logPath))
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(50 * time.Millisecond):
			if time.Now().Before(deadline) {
				continue
			}
			err = fmt.Errorf("starting %s: not ready after %v: %w: %s", name, dbReadyTimeout, err, tail(s.logPath))
		}
		s.Close()
		return nil, err
	}
}

// startRedis starts a redis-server without persistence on a free loopback
// port.
func startRedis(ctx context.Context, bin string) (*dbServer, error) {
	dir, err := os.MkdirTemp("", "sluice-bench-redis-")
	if err != nil {
		return nil, fmt.Errorf("starting redis: %w", err)
	}
	addr, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	return startDB(ctx, "redis", dir, addr, nil, syscall.SIGTERM, func(ctx context.Context) error { return redisPing(ctx, addr) },
		bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--daemonize", "no")
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
	cred, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "sluice-bench-pg-")
	if err != nil {
		return nil, fmt.Errorf("starting postgres: %w", err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("starting postgres: %w", err)
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.CommandContext(ctx, tools.bin("initdb"), "-D", data, "-U", "postgres", "--auth=trust",
		"--no-sync", "--no-instructions", "-E", "UTF8", "--locale=C")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting postgres: initdb: %w: %s", err, lastLines(out, 5))
	}
	addr, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	argv := append([]string{tools.bin("postgres"), "-D", data, "-p", port, "-k", dir}, pgSettings...)
	// SIGINT is a fast shutdown: sessions are ended, nothing is kept.
	s, err := startDB(ctx, "postgres", dir, addr, cred, syscall.SIGINT, func(ctx context.Context) error {
		return exec.CommandContext(ctx, tools.bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", port).Run()
	}, argv...)
	if err != nil {
		return nil, err
	}
	ini := exec.CommandContext(ctx, tools.bin("pgbench"), "-i", "-q", "-s", pgbenchScale)
	ini.Env = append(os.Environ(), pgEnv(addr)...)
	if out, err := ini.CombinedOutput(); err != nil {
		s.Close()
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

// postgresCredential returns the postgres user's ids when we are root,
// else nil: run as ourselves.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("looking up the postgres user (installed with postgresql): %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("postgres user has ids %q:%q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// pgTools is the directory of PostgreSQL's programs.
type pgTools string

func (d pgTools) bin(name string) string { return filepath.Join(string(d), name) }

// errNoPostgres says PostgreSQL's programs are not installed.
var errNoPostgres = errors.New("no /usr/lib/postgresql/*/bin with postgres, initdb and pgbench")

// findPgTools finds PostgreSQL's programs: Debian keeps them in
// /usr/lib/postgresql/VERSION/bin, off PATH; the newest version wins.
func findPgTools() (pgTools, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(d string) int { v, _ := strconv.Atoi(filepath.Base(filepath.Dir(d))); return v }
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, d := range dirs {
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
