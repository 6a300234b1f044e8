package dbtest

import (
	"context"
	"crypto/rand"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"sluice/internal/dbproc"
)

// Postgres is a running PostgreSQL server: a primary from StartPostgres or a hot
// standby from StartStandby. Password logins over TCP use SCRAM-SHA-256.
type Postgres struct {
	Addr     netip.AddrPort
	User     string // the superuser, "postgres"
	Password string // random, per server tree (a standby shares its primary's)
	Database string // "postgres"
	dir      string // owned by the postgres user; data in dir/data
	srv      *dbproc.Process
}

// pgSettings keep a test server small and fast. fsync off: the data is thrown away.
var pgSettings = []string{
	"-c", "listen_addresses=127.0.0.1",
	"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
	"-c", "shared_buffers=16MB", "-c", "max_connections=60",
	"-c", "password_encryption=scram-sha-256",
}

// StartPostgres initializes a cluster (initdb) and starts it on a free loopback port.
// pg_hba.conf asks for SCRAM-SHA-256 on TCP, replication included; the superuser
// "postgres" has a random password. It stops when t ends.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	p := &Postgres{User: "postgres", Password: rand.Text(), Database: "postgres"}
	p.dir = tempDir(t, "pg", true)
	pw := filepath.Join(p.dir, "pw")
	if err := writePostgresFile(pw, p.Password+"\n"); err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	runPostgresTool(t, "initdb", nil, "-D", p.data(), "-U", p.User, "--pwfile", pw,
		"--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "--no-instructions",
		"-E", "UTF8", "--locale=C")
	p.start(t)
	return p
}

// StartStandby makes a hot standby of primary with pg_basebackup -R (which writes
// standby.signal and primary_conninfo) and starts it on another free port. It stops
// when t ends.
func StartStandby(t testing.TB, primary *Postgres) *Postgres {
	t.Helper()
	s := &Postgres{User: primary.User, Password: primary.Password, Database: primary.Database}
	s.dir = tempDir(t, "pg-standby", true)
	runPostgresTool(t, "pg_basebackup", primary.Env(), "-D", s.data(), "-R",
		"-X", "stream", "-c", "fast", "--no-sync")
	s.start(t)
	return s
}

func (p *Postgres) data() string { return filepath.Join(p.dir, "data") }

// start runs postgres on a free port and waits until it takes logins.
func (p *Postgres) start(t testing.TB) {
	t.Helper()
	bin := postgresBin(t, "postgres")
	err := dbproc.WithFreePort(func(port uint16) error {
		args := append([]string{"-D", p.data(), "-p", strconv.Itoa(int(port)), "-k", p.dir},
			pgSettings...)
		// SIGQUIT is an immediate shutdown: the data is thrown away anyway.
		o := dbproc.Options{Dir: p.dir, AsPostgres: true, StopSignal: syscall.SIGQUIT}
		srv, err := dbproc.Start("postgres", o, bin, args...)
		if err != nil {
			return err
		}
		cleanup(t, srv)
		p.Addr, p.srv = loopback(port), srv
		return srv.WaitReady(context.Background(), func(ctx context.Context) error {
			conn, err := p.Connect(ctx)
			if err == nil {
				conn.Close(ctx)
			}
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Connect logs in as the superuser over TCP.
func (p *Postgres) Connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig("sslmode=disable")
	if err != nil {
		return nil, err
	}
	cfg.Host, cfg.Port = p.Addr.Addr().String(), p.Addr.Port()
	cfg.User, cfg.Password, cfg.Database = p.User, p.Password, p.Database
	cfg.Fallbacks = nil
	return pgx.ConnectConfig(ctx, cfg)
}

// Exec runs sql as the superuser; an error fails t.
func (p *Postgres) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	p.query(t, sql, args, nil)
}

// QueryString runs sql, which returns one text value, as the superuser.
func (p *Postgres) QueryString(t testing.TB, sql string, args ...any) string {
	t.Helper()
	var s string
	p.query(t, sql, args, &s)
	return s
}

func (p *Postgres) query(t testing.TB, sql string, args []any, dest *string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := p.Connect(ctx)
	if err != nil {
		t.Fatalf("postgres %v: %v", p.Addr, err)
	}
	defer conn.Close(ctx)
	if dest == nil {
		_, err = conn.Exec(ctx, sql, args...)
	} else {
		err = conn.QueryRow(ctx, sql, args...).Scan(dest)
	}
	if err != nil {
		t.Fatalf("postgres %v: %s: %v", p.Addr, sql, err)
	}
}

// Promote ends recovery on a standby and waits until it is a primary.
func (p *Postgres) Promote(t testing.TB) {
	t.Helper()
	if ok := p.QueryString(t, "SELECT pg_promote(true, 60)::text"); ok != "true" {
		t.Fatalf("postgres %v: pg_promote returned %s", p.Addr, ok)
	}
}

// Env returns PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE for client programs
// such as psql and pgbench. Append PGHOST and PGPORT again to connect elsewhere (through
// a proxy): the last value of a name wins.
func (p *Postgres) Env() []string {
	return []string{"PGHOST=127.0.0.1", "PGPORT=" + strconv.Itoa(int(p.Addr.Port())),
		"PGUSER=" + p.User, "PGPASSWORD=" + p.Password, "PGDATABASE=" + p.Database,
		"PGSSLMODE=disable", "PGCONNECT_TIMEOUT=10"}
}

// Stop shuts the server down now, for tests of a backend going away. Stopping twice is
// fine.
func (p *Postgres) Stop(t testing.TB) {
	t.Helper()
	if err := p.srv.Stop(); err != nil {
		t.Error(err)
	}
}

// PostgresBin returns the path of a PostgreSQL program such as pgbench. Debian keeps
// them in /usr/lib/postgresql/VERSION/bin, off PATH; the newest version wins.
func PostgresBin(t testing.TB, name string) string {
	t.Helper()
	return postgresBin(t, name)
}

func postgresBin(t testing.TB, name string) string {
	t.Helper()
	bin, err := lookBin(name, dbproc.PostgresBinDirs()...)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// runPostgresTool runs one of initdb, pg_basebackup as the postgres user.
func runPostgresTool(t testing.TB, name string, env []string, args ...string) {
	t.Helper()
	cmd := exec.Command(postgresBin(t, name), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = os.TempDir()
	cred, err := dbproc.PostgresCredential()
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dbtest: %s: %v\n%s", name, err, out)
	}
}

// writePostgresFile writes a file the postgres user can read.
func writePostgresFile(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return err
	}
	return dbproc.ChownPostgres(path)
}
