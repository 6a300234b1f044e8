package main

// TLS terminated on TCP listeners, with real clients: redis-cli --tls in
// front of Redis, openssl s_client for ALPN, and psql and pgbench through
// a PostgreSQL listener (starttls = "postgres") to a real server, plain
// and re-encrypted.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"sluice/internal/certs/mint"
	"sluice/internal/dbproc"
	"sluice/internal/dbtest"
)

// TestTLSInFrontOfRedis: redis-cli --tls through a TCP listener with [tls]
// to a plain Redis; the log line names the SNI.
func TestTLSInFrontOfRedis(t *testing.T) {
	f := newTLSFixture(t)
	r := dbtest.StartRedis(t, dbtest.RedisOptions{})
	addr := freeDualPort(t)
	p := startDBSluice(t, fmt.Sprintf(`[listeners.redis]
bind = %q
pool = "redis"
[listeners.redis.tls]
cert_file = %q
key_file = %q
alpn = ["redis"]

[pools.redis]
[[pools.redis.backends]]
address = "%s"
`, addr, f.a.CertFile, f.a.KeyFile, r.Addr), "redis")
	cli := need(t, "redis-cli", "redis-tools")
	run := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		base := []string{"-e", "--tls", "--cacert", f.caFile, "--sni", "a.test", "-h", "127.0.0.1", "-p", portString(addr)}
		out, err := exec.CommandContext(ctx, cli, append(base, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := run("SET", "k", "through TLS"); err != nil || out != "OK" {
		t.Fatalf("redis-cli --tls SET: %q, %v", out, err)
	}
	if out, err := run("GET", "k"); err != nil || out != "through TLS" {
		t.Fatalf("redis-cli --tls GET: %q, %v", out, err)
	}
	// A value larger than a TLS record, both ways.
	big := strings.Repeat("0123456789", 10000)
	if out, err := run("SET", "big", big); err != nil || out != "OK" {
		t.Fatalf("SET of 100 kB: %q, %v", out, err)
	}
	if out, err := run("STRLEN", "big"); err != nil || out != "100000" {
		t.Fatalf("STRLEN: %q, %v", out, err)
	}
	if out, err := run("GET", "big"); err != nil || out != big {
		t.Fatalf("GET of 100 kB: %d bytes, %v", len(out), err)
	}
	p.waitOutput(t, "sni=a.test")
	p.waitOutput(t, "end=client_closed")
	// ALPN as configured; a plain client is refused.
	out, ok := sClient(t, addr, "-servername", "a.test", "-CAfile", f.caFile, "-alpn", "redis")
	if !ok {
		t.Fatalf("s_client:\n%s", out)
	}
	wantContains(t, out, "ALPN protocol: redis", "Verify return code: 0 (ok)")
	if out, err := exec.Command(cli, "-h", "127.0.0.1", "-p", portString(addr), "PING").CombinedOutput(); strings.Contains(string(out), "PONG") {
		t.Errorf("a plain client got an answer: %s, %v", out, err)
	}
	p.waitOutput(t, "end=handshake_failed")
}

// pgTLSConfig is a PostgreSQL listener "pg" with starttls = "postgres"
// (require_tls as given) to pool "pg", whose [tls] is given.
func pgTLSConfig(f *tlsFixture, addr string, requireTLS bool, pg *dbtest.Postgres, poolTLS string) string {
	return fmt.Sprintf(`[listeners.pg]
bind = %q
pool = "pg"
[listeners.pg.tls]
cert_file = %q
key_file = %q
starttls = "postgres"
require_tls = %v

[pools.pg]
%s
[[pools.pg.backends]]
address = "%s"
`, addr, f.a.CertFile, f.a.KeyFile, requireTLS, poolTLS, pg.Addr)
}

// pgEnv is the environment a libpq client uses through sluice at addr,
// with sslmode and more as given.
func pgEnv(pg *dbtest.Postgres, addr string, more ...string) []string {
	env := append(os.Environ(), pg.Env()...)
	// The last value of a name wins: sluice's address, verified as a.test.
	env = append(env, "PGHOST=a.test", "PGHOSTADDR=127.0.0.1", "PGPORT="+portString(addr))
	return append(env, more...)
}

func runPG(t *testing.T, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, dbtest.PostgresBin(t, name), args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestPostgresTLSAtSluice: psql with sslmode=require and verify-full
// (sslsni=1) and pgbench through sluice to a plain PostgreSQL; a client not
// asking for TLS refused, or let through with require_tls = false.
func TestPostgresTLSAtSluice(t *testing.T) {
	f := newTLSFixture(t)
	pg := dbtest.StartPostgres(t)
	addr, open := freeDualPort(t), freeDualPort(t)
	cfg := pgTLSConfig(f, addr, true, pg, "") + fmt.Sprintf(`
[listeners.open]
bind = %q
pool = "pg"
[listeners.open.tls]
cert_file = %q
key_file = %q
starttls = "postgres"
require_tls = false
`, open, f.a.CertFile, f.a.KeyFile)
	p := startDBSluice(t, cfg, "pg", "open")

	query := "SELECT current_user"
	for _, mode := range [][]string{
		{"PGSSLMODE=require"},
		{"PGSSLMODE=verify-full", "PGSSLROOTCERT=" + f.caFile, "PGSSLSNI=1"},
	} {
		out, err := runPG(t, pgEnv(pg, addr, mode...), "psql", "-X", "-A", "-t", "-c", query)
		if err != nil || out != "postgres" {
			t.Fatalf("psql %v through sluice: %q, %v", mode, out, err)
		}
	}
	p.waitOutput(t, "sni=a.test")
	// verify-full against a name the certificate does not cover fails.
	bad := pgEnv(pg, addr, "PGSSLMODE=verify-full", "PGSSLROOTCERT="+f.caFile, "PGHOST=wrong.test")
	if out, err := runPG(t, bad, "psql", "-X", "-c", query); err == nil {
		t.Errorf("verify-full accepted a certificate for another name: %s", out)
	}
	out, err := runPG(t, pgEnv(pg, addr, "PGSSLMODE=disable"), "psql", "-X", "-c", query)
	if err == nil || !strings.Contains(out, "requires TLS") {
		t.Errorf("a plain client on require_tls: %q, %v; want refused", out, err)
	}
	if out, err := runPG(t, pgEnv(pg, open, "PGSSLMODE=disable"), "psql", "-X", "-A", "-t", "-c", query); err != nil || out != "postgres" {
		t.Errorf("a plain client with require_tls = false: %q, %v", out, err)
	}
	// pgx, with PostgreSQL 17's direct TLS (ALPN postgresql) too.
	for _, neg := range []string{"postgres", "direct"} {
		dsn := fmt.Sprintf("host=a.test port=%s user=%s password=%s dbname=%s "+
			"sslmode=verify-full sslrootcert=%s sslnegotiation=%s", portString(addr), pg.User, pg.Password,
			pg.Database, f.caFile, neg)
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		// a.test is sluice on loopback; the name is for TLS.
		cfg.LookupFunc = func(context.Context, string) ([]string, error) { return []string{"127.0.0.1"}, nil }
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			cancel()
			t.Fatalf("pgx with sslnegotiation=%s: %v", neg, err)
		}
		var one int
		err = conn.QueryRow(ctx, "SELECT 1").Scan(&one)
		conn.Close(ctx)
		cancel()
		if err != nil || one != 1 {
			t.Fatalf("pgx with sslnegotiation=%s: %d, %v", neg, one, err)
		}
	}
	env := pgEnv(pg, addr, "PGSSLMODE=require")
	if out, err := runPG(t, env, "pgbench", "-i", "-s", "1", "-q"); err != nil {
		t.Fatalf("pgbench -i through sluice: %v\n%s", err, out)
	}
	out, err = runPG(t, env, "pgbench", "-c", "4", "-j", "2", "-t", "200")
	if err != nil || !strings.Contains(out, "number of failed transactions: 0") {
		t.Fatalf("pgbench through sluice: %v\n%s", err, out)
	}
	t.Logf("pgbench with TLS at sluice:\n%s", out)
}

// TestPostgresTLSBothWays: the backend speaks TLS too, asked with its own
// SSLRequest; the server sees an encrypted connection.
func TestPostgresTLSBothWays(t *testing.T) {
	f := newTLSFixture(t)
	pg := dbtest.StartPostgres(t)
	// The server's certificate, from the test CA, for 127.0.0.1, in a
	// directory the postgres user can read.
	dir, err := os.MkdirTemp("", "sluice-pgtls-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	srv, err := f.ca.Issue(dir, "pgsrv", mint.ECDSA, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{srv.CertFile, srv.KeyFile} {
		if err := dbproc.ChownPostgres(file); err != nil {
			t.Fatal(err)
		}
	}
	pg.Exec(t, "ALTER SYSTEM SET ssl = on")
	pg.Exec(t, "ALTER SYSTEM SET ssl_cert_file = '"+srv.CertFile+"'")
	pg.Exec(t, "ALTER SYSTEM SET ssl_key_file = '"+srv.KeyFile+"'")
	pg.Exec(t, "SELECT pg_reload_conf()")
	// The postmaster rereads its files when the signal reaches it, after
	// pg_reload_conf returns: a connection made before then is refused TLS.
	waitFor(t, 10*time.Second, "PostgreSQL to turn ssl on", func() bool { return pg.QueryString(t, "SHOW ssl") == "on" })
	addr := freeDualPort(t)
	p := startDBSluice(t, pgTLSConfig(f, addr, true, pg, fmt.Sprintf("tls = { ca_file = %q }", f.caFile)), "pg")
	// SCRAM channel binding binds the client's TLS to the server's: two
	// TLS connections with different certificates cannot pass it (as
	// with any terminating proxy), so libpq must not use it.
	env := pgEnv(pg, addr, "PGSSLMODE=verify-full", "PGSSLROOTCERT="+f.caFile)
	if out, err := runPG(t, env, "psql", "-X", "-c", "SELECT 1"); err == nil || !strings.Contains(out, "channel binding") {
		t.Errorf("channel binding across two TLS connections: %q, %v; want it to fail", out, err)
	}
	out, err := runPG(t, append(env, "PGCHANNELBINDING=disable"),
		"psql", "-X", "-A", "-t", "-c", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
	if err != nil || out != "t" {
		t.Fatalf("psql through sluice to a TLS backend: %q, %v; want ssl = t on the server", out, err)
	}
	// psql sends Terminate and closes; the server closes on Terminate too,
	// so either side's close may reach sluice first.
	waitFor(t, 20*time.Second, "the connection's log line", func() bool {
		out := p.out.String()
		return strings.Contains(out, "end=client_closed") || strings.Contains(out, "end=backend_closed")
	})
	if out := p.out.String(); strings.Contains(out, "end=backend_reset") || strings.Contains(out, "end=client_reset") {
		t.Fatalf("a connection ended by a reset:\n%s", out)
	}
}
