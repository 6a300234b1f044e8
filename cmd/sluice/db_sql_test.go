package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"sluice/internal/dbtest"
)

// pgIdentify logs in to the PostgreSQL behind addr as pg's superuser (by SCRAM) and
// asks which server it is.
func pgIdentify(pg *dbtest.Postgres) identify {
	return func(ctx context.Context, addr string) (reached, error) {
		cfg, err := pgx.ParseConfig("sslmode=disable")
		if err != nil {
			return reached{}, err
		}
		ap := netip.MustParseAddrPort(addr)
		cfg.Host, cfg.Port = ap.Addr().String(), ap.Port()
		cfg.User, cfg.Password, cfg.Database = pg.User, pg.Password, pg.Database
		cfg.Fallbacks = nil
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return reached{}, err
		}
		defer conn.Close(ctx)
		var port int
		var recovery bool
		err = conn.QueryRow(ctx, "SELECT inet_server_port(), pg_is_in_recovery()").Scan(&port, &recovery)
		return reached{port: uint16(port), primary: !recovery}, err
	}
}

// psql runs one query with psql through sluice at addr, logged in by env.
func psql(t *testing.T, env []string, addr, query string) (string, error) {
	t.Helper()
	cmd := exec.Command(dbtest.PostgresBin(t, "psql"), "-X", "-A", "-t", "-c", query)
	// The last PGHOST and PGPORT win: sluice's, not the server's in env.
	cmd.Env = append(append(os.Environ(), env...), "PGHOST=127.0.0.1", "PGPORT="+portString(addr))
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// checkPsql logs in with psql through sluice, by SCRAM (the only method pg_hba.conf
// has for TCP), and checks the primary/replica split with pg_is_in_recovery().
func checkPsql(t *testing.T, primary *dbtest.Postgres, rw, ro string) {
	t.Helper()
	got, err := psql(t, primary.Env(), rw,
		"SELECT string_agg(DISTINCT auth_method, ',') FROM pg_hba_file_rules WHERE type = 'host'")
	if err != nil || got != "scram-sha-256" {
		t.Fatalf("psql through sluice: %q, %v; want scram-sha-256 host rules", got, err)
	}
	wrong := append(primary.Env(), "PGPASSWORD=wrong")
	if got, err := psql(t, wrong, rw, "SELECT 1"); err == nil || !strings.Contains(got, "password authentication failed") {
		t.Fatalf("psql with a wrong password through sluice: %q, %v", got, err)
	}
	for _, tc := range []struct{ addr, want string }{{rw, "f"}, {ro, "t"}} {
		if got, err := psql(t, primary.Env(), tc.addr, "SELECT pg_is_in_recovery()"); err != nil || got != tc.want {
			t.Fatalf("pg_is_in_recovery() through %s: %q, %v; want %s", tc.addr, got, err, tc.want)
		}
	}
}

// TestPostgresPrimaryReplicaThroughSluice runs a PostgreSQL primary and a hot standby
// made with pg_basebackup -R behind a role = "primary" and a role = "replica" pool:
// SCRAM logins through sluice, the split, then a failover (the primary stopped, the
// standby promoted) that new primary-pool connections follow.
func TestPostgresPrimaryReplicaThroughSluice(t *testing.T) {
	primary := dbtest.StartPostgres(t)
	standby := dbtest.StartStandby(t, primary)
	rw, ro := freePort(t), freePort(t)
	both := []netip.AddrPort{primary.Addr, standby.Addr}
	keys := fmt.Sprintf("user = %q\npassword = %q\n", primary.User, primary.Password)
	p := startDBSluice(t, dbConfig(
		dbPool{name: "rw", bind: rw, kind: "postgres", role: "primary", keys: keys, backends: both},
		dbPool{name: "ro", bind: ro, kind: "postgres", role: "replica", keys: keys, backends: both},
	), "rw", "ro")

	checkPsql(t, primary, rw, ro)
	id := pgIdentify(primary)
	wantAll(t, id, rw, reached{primary.Addr.Port(), true}, 6)
	wantAll(t, id, ro, reached{standby.Addr.Port(), false}, 6)

	primary.Stop(t)
	standby.Promote(t)
	follow(t, time.Now(), &watch{addr: rw, want: reached{standby.Addr.Port(), true}, id: id})

	// The replica pool has lost its only replica: new connections are reset at once
	// (possibly before the client's connect returns), and the log says why.
	p.waitOutput(t, `msg="backend down" pool=ro backend=`+standby.Addr.String()+` reason="role primary, want replica"`)
	c, err := net.DialTimeout("tcp", ro, 5*time.Second)
	if err == nil {
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		var n int
		if n, err = c.Read(make([]byte, 1)); n != 0 {
			t.Fatalf("replica pool without a replica: read %d bytes", n)
		}
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("replica pool without a replica: client saw %v; want a reset at once", err)
	}
	p.waitOutput(t, "end=no_backend")
	if !strings.Contains(p.out.String(), standby.Addr.String()+` down (role primary, want replica)`) {
		t.Errorf("no end=no_backend line naming the promoted standby's role")
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// mysqlIdentify logs in to the MariaDB behind addr as user and asks which server it
// is: its port and whether it is read-only.
func mysqlIdentify(user, password string) identify {
	return func(ctx context.Context, addr string) (reached, error) {
		cfg := mysql.NewConfig()
		cfg.Net, cfg.Addr, cfg.User, cfg.Passwd = "tcp", addr, user, password
		cfg.Logger = &mysql.NopLogger{}
		c, err := mysql.NewConnector(cfg)
		if err != nil {
			return reached{}, err
		}
		db := sql.OpenDB(c) // a new connection each time: nothing is pooled
		defer db.Close()
		var port uint16
		var readOnly bool
		err = db.QueryRowContext(ctx, "SELECT @@port, @@global.read_only").Scan(&port, &readOnly)
		return reached{port: port, primary: !readOnly}, err
	}
}

// TestMariaDBReadOnlyToggled runs two MariaDB servers, one of them read_only, behind a
// role = "primary" and a role = "replica" pool, swaps read_only between them, and
// checks that new connections of both pools follow.
func TestMariaDBReadOnlyToggled(t *testing.T) {
	const user, password = "app", "app-password"
	servers := []*dbtest.MariaDB{dbtest.StartMariaDB(t), dbtest.StartMariaDB(t)}
	for _, m := range servers {
		// A checking user without privileges: @@global.read_only needs none.
		m.Exec(t, fmt.Sprintf("CREATE USER '%s'@'127.0.0.1' IDENTIFIED BY '%s'", user, password))
	}
	a, b := servers[0], servers[1]
	b.Exec(t, "SET GLOBAL read_only = ON")
	rw, ro := freePort(t), freePort(t)
	both := []netip.AddrPort{a.Addr, b.Addr}
	keys := fmt.Sprintf("user = %q\npassword = %q\n", user, password)
	startDBSluice(t, dbConfig(
		dbPool{name: "rw", bind: rw, kind: "mysql", role: "primary", keys: keys, backends: both},
		dbPool{name: "ro", bind: ro, kind: "mysql", role: "replica", keys: keys, backends: both},
	), "rw", "ro")
	id := mysqlIdentify(user, password)
	wantAll(t, id, rw, reached{a.Addr.Port(), true}, 6)
	wantAll(t, id, ro, reached{b.Addr.Port(), false}, 6)

	// A switchover: the old primary stops taking writes first.
	a.Exec(t, "SET GLOBAL read_only = ON")
	b.Exec(t, "SET GLOBAL read_only = OFF")
	swapped := time.Now()
	follow(t, swapped, &watch{addr: rw, want: reached{b.Addr.Port(), true}, id: id},
		&watch{addr: ro, want: reached{a.Addr.Port(), false}, id: id})
}
