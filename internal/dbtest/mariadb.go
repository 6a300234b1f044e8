package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"sluice/internal/dbproc"
)

// MariaDB is a running MariaDB server.
type MariaDB struct {
	Addr     netip.AddrPort
	User     string // "sluice"@"127.0.0.1", with every privilege
	Password string // random
	dir      string
	srv      *dbproc.Process
}

// mariadbSettings keep a test server small and fast; the data is thrown away.
var mariadbSettings = []string{
	"--bind-address=127.0.0.1", "--skip-name-resolve", "--skip-log-bin",
	"--innodb-buffer-pool-size=16M", "--innodb-log-file-size=4M",
	"--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0",
	"--performance-schema=OFF", "--max-connections=60",
}

// StartMariaDB initializes a data directory (mariadb-install-db), starts mariadbd on a
// free loopback port and creates a user with a password for TCP logins. It stops when t
// ends. extra are more server options, such as --ssl-cert and --ssl-key.
func StartMariaDB(t testing.TB, extra ...string) *MariaDB {
	t.Helper()
	m := &MariaDB{User: "sluice", Password: rand.Text()}
	m.dir = tempDir(t, "mariadb", false)
	if err := os.Mkdir(m.tmp(), 0o700); err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	m.install(t)
	bin, err := lookBin("mariadbd", "/usr/sbin")
	if err != nil {
		t.Fatal(err)
	}
	err = dbproc.WithFreePort(func(port uint16) error {
		// --no-defaults first: ignore /etc/mysql. The init file runs at every start,
		// before the server takes connections.
		args := append([]string{"--no-defaults", "--datadir=" + m.data(),
			"--port=" + strconv.Itoa(int(port)), "--socket=" + filepath.Join(m.dir, "sock"),
			"--pid-file=" + filepath.Join(m.dir, "pid"), "--init-file=" + m.initFile(),
			"--tmpdir=" + m.tmp()},
			mariadbSettings...)
		args = append(args, extra...)
		if os.Geteuid() == 0 {
			args = append(args, "--user=root")
		}
		srv, err := dbproc.Start("mariadbd", dbproc.Options{Dir: m.dir, StopSignal: syscall.SIGTERM},
			bin, args...)
		if err != nil {
			return err
		}
		cleanup(t, srv)
		m.Addr, m.srv = loopback(port), srv
		return srv.WaitReady(context.Background(), func(ctx context.Context) error {
			return m.exec(ctx, "SELECT 1")
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (m *MariaDB) data() string     { return filepath.Join(m.dir, "data") }
func (m *MariaDB) initFile() string { return filepath.Join(m.dir, "init.sql") }

// tmp is the server's own temporary directory. mariadbd deletes every #sql* file in
// its tmpdir as it starts, so with the shared /tmp a server starting in one test
// deleted the temporary tables of a mariadb-install-db running in another ("Unknown
// table 'mysql.tmp_proxies_priv'").
func (m *MariaDB) tmp() string { return filepath.Join(m.dir, "tmp") }

// install runs mariadb-install-db and writes the init file that creates the user.
func (m *MariaDB) install(t testing.TB) {
	t.Helper()
	bin, err := lookBin("mariadb-install-db", "/usr/bin", "/usr/local/bin")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--no-defaults", "--datadir=" + m.data(), "--skip-test-db",
		"--auth-root-authentication-method=socket", "--skip-name-resolve",
		"--innodb-log-file-size=4M", "--innodb-buffer-pool-size=16M", "--tmpdir=" + m.tmp()}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = m.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dbtest: mariadb-install-db: %v\n%s", err, out)
	}
	init := fmt.Sprintf("CREATE USER IF NOT EXISTS '%s'@'127.0.0.1' IDENTIFIED BY '%s';\n"+
		"GRANT ALL PRIVILEGES ON *.* TO '%[1]s'@'127.0.0.1' WITH GRANT OPTION;\n",
		m.User, m.Password)
	if err := os.WriteFile(m.initFile(), []byte(init), 0o600); err != nil {
		t.Fatalf("dbtest: %v", err)
	}
}

// Config returns a go-sql-driver configuration that logs in as m.User over TCP.
func (m *MariaDB) Config() *mysql.Config {
	cfg := mysql.NewConfig()
	cfg.Net, cfg.Addr = "tcp", m.Addr.String()
	cfg.User, cfg.Passwd = m.User, m.Password
	cfg.Logger = &mysql.NopLogger{}
	return cfg
}

// Exec runs statement as m.User; an error fails t.
func (m *MariaDB) Exec(t testing.TB, statement string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.exec(ctx, statement); err != nil {
		t.Fatalf("mariadb %v: %s: %v", m.Addr, statement, err)
	}
}

func (m *MariaDB) exec(ctx context.Context, statement string) error {
	c, err := mysql.NewConnector(m.Config())
	if err != nil {
		return err
	}
	db := sql.OpenDB(c)
	defer db.Close()
	_, err = db.ExecContext(ctx, statement)
	return err
}

// Stop shuts the server down now, for tests of a backend going away. Stopping twice is
// fine.
func (m *MariaDB) Stop(t testing.TB) {
	t.Helper()
	if err := m.srv.Stop(); err != nil {
		t.Error(err)
	}
}
