package main

// MySQL TLS offload (starttls = "mysql") with real clients: the mariadb
// command-line client with --ssl and --ssl-verify-server-cert, and the Go
// driver with TLS, through sluice to a real MariaDB, plain and
// re-encrypted.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"sluice/internal/certs"
	"sluice/internal/certs/mint"
	"sluice/internal/dbtest"
)

// mysqlTLSConfig is a listener "my" with starttls = "mysql" (require_tls
// as given) to pool "my" (with poolTLS in its table) of the server m.
func mysqlTLSConfig(db certs.Pair, addr string, requireTLS bool, m *dbtest.MariaDB, poolTLS string) string {
	return fmt.Sprintf(`[listeners.my]
bind = %q
pool = "my"
[listeners.my.tls]
cert_file = %q
key_file = %q
starttls = "mysql"
require_tls = %v

[pools.my]
%s
[[pools.my.backends]]
address = "%s"
`, addr, db.CertFile, db.KeyFile, requireTLS, poolTLS, m.Addr)
}

// newMySQLFixture is the test CA's fixture and a certificate for db.test
// and 127.0.0.1 (the mariadb client verifies the host it connects to,
// and has no way to connect to one address while verifying another name).
func newMySQLFixture(t *testing.T) (*tlsFixture, certs.Pair) {
	t.Helper()
	f := newTLSFixture(t)
	return f, f.issue(t, "db", mint.ECDSA, "db.test", "127.0.0.1")
}

// runMariaDB runs the mariadb client against sluice at addr with args.
func runMariaDB(t *testing.T, m *dbtest.MariaDB, addr string, args ...string) (string, error) {
	t.Helper()
	bin := need(t, "mariadb", "mariadb-client")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := []string{"--no-defaults", "-h", "127.0.0.1", "-P", portString(addr), "-u", m.User,
		"--batch", "--skip-column-names"}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	cmd.Env = append(os.Environ(), "MYSQL_PWD="+m.Password)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// goMySQL logs in through sluice at addr with the Go driver, over TLS
// (verified as db.test) unless f is nil, and returns what query answers.
func goMySQL(t *testing.T, m *dbtest.MariaDB, f *tlsFixture, addr, query string) (string, error) {
	t.Helper()
	cfg := m.Config()
	cfg.Addr = addr
	if f != nil {
		roots := x509.NewCertPool()
		roots.AddCert(f.ca.Cert)
		cfg.TLS = &tls.Config{RootCAs: roots, ServerName: "db.test"}
	}
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return "", err
	}
	db := sql.OpenDB(c)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var s string
	err = db.QueryRowContext(ctx, query).Scan(&s)
	return s, err
}

// TestMySQLTLSAtSluice: the mariadb client with --ssl and
// --ssl-verify-server-cert, and the Go driver with TLS, through sluice to
// a plain MariaDB; a plain client is refused with an error it shows.
func TestMySQLTLSAtSluice(t *testing.T) {
	f, db := newMySQLFixture(t)
	m := dbtest.StartMariaDB(t)
	addr := freeDualPort(t)
	p := startDBSluice(t, mysqlTLSConfig(db, addr, true, m, ""), "my")

	// The client's own status: TLS to sluice; the server's: plain.
	out, err := runMariaDB(t, m, addr, "--ssl", "--ssl-ca="+f.caFile, "--ssl-verify-server-cert",
		"-e", `status; SHOW SESSION STATUS LIKE 'Ssl_version'`)
	if err != nil {
		t.Fatalf("mariadb --ssl --ssl-verify-server-cert: %v\n%s", err, out)
	}
	wantContains(t, out, "Cipher in use is TLS_")
	if strings.Contains(out, "TLSv1") {
		t.Errorf("the server saw TLS, not sluice:\n%s", out)
	}
	// More than a TLS record each way, after the login.
	big := strings.Repeat("0123456789", 5000)
	out, err = runMariaDB(t, m, addr, "--ssl", "--ssl-ca="+f.caFile, "--ssl-verify-server-cert",
		"-e", fmt.Sprintf("SELECT LENGTH('%s'), REPEAT('x', 100000) = REPEAT('x', 100000)", big))
	if err != nil || out != "50000\t1" {
		t.Fatalf("a 50 kB query: %q, %v", out, err)
	}
	if s, err := goMySQL(t, m, f, addr, "SELECT 'go driver'"); err != nil || s != "go driver" {
		t.Fatalf("go-sql-driver with TLS: %q, %v", s, err)
	}
	p.waitOutput(t, "sni=db.test") // the Go driver sends SNI; the mariadb client does not for an IP

	// Another plugin, through the server's auth switch: more packets
	// with shifted ids.
	m.Exec(t, "INSTALL SONAME 'auth_ed25519'")
	m.Exec(t, "CREATE USER 'ed'@'127.0.0.1' IDENTIFIED VIA ed25519 USING PASSWORD('ed-password')")
	ed := *m
	ed.User, ed.Password = "ed", "ed-password"
	if out, err := runMariaDB(t, &ed, addr, "--ssl", "--ssl-ca="+f.caFile, "--ssl-verify-server-cert", "-e", "SELECT CURRENT_USER()"); err != nil || out != "ed@127.0.0.1" {
		t.Errorf("mariadb as an ed25519 user: %q, %v", out, err)
	}
	if s, err := goMySQL(t, &ed, f, addr, "SELECT CURRENT_USER()"); err != nil || s != "ed@127.0.0.1" {
		t.Errorf("go-sql-driver as an ed25519 user: %q, %v", s, err)
	}

	// A certificate that does not verify fails the client, not sluice.
	other, err := mint.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	otherFile, err := other.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if out, err := runMariaDB(t, m, addr, "--ssl", "--ssl-ca="+otherFile, "--ssl-verify-server-cert", "-e", "SELECT 1"); err == nil {
		t.Errorf("a client that does not trust sluice's certificate logged in:\n%s", out)
	}
	out, err = runMariaDB(t, m, addr, "--skip-ssl", "-e", "SELECT 1")
	if err == nil || !strings.Contains(out, "requires TLS") {
		t.Errorf("a plain client: %v\n%s", err, out)
	}
	p.waitOutput(t, "end=handshake_failed")
}

// TestMySQLTLSBothWays: with [tls] on the pool, sluice asks the server for
// TLS itself; a plain client, allowed, is carried to the server in TLS.
func TestMySQLTLSBothWays(t *testing.T) {
	f, db := newMySQLFixture(t)
	srv := f.issue(t, "server", mint.ECDSA, "127.0.0.1")
	m := dbtest.StartMariaDB(t, "--ssl-cert="+srv.CertFile, "--ssl-key="+srv.KeyFile, "--ssl-ca="+f.caFile)
	addr := freeDualPort(t)
	startDBSluice(t, mysqlTLSConfig(db, addr, false, m, fmt.Sprintf("tls = { ca_file = %q }", f.caFile)), "my")

	for _, tc := range []struct {
		name string
		args []string
		tls  bool // the client's side in TLS
	}{
		{"TLS client", []string{"--ssl", "--ssl-ca=" + f.caFile, "--ssl-verify-server-cert"}, true},
		{"plain client", []string{"--skip-ssl"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(tc.args, "-e", `status; SHOW SESSION STATUS LIKE 'Ssl_version'`)
			out, err := runMariaDB(t, m, addr, args...)
			if err != nil {
				t.Fatalf("mariadb: %v\n%s", err, out)
			}
			wantContains(t, out, "Ssl_version\tTLSv1.3")
			if got := strings.Contains(out, "Cipher in use is"); got != tc.tls {
				t.Errorf("client side in TLS: %v, want %v\n%s", got, tc.tls, out)
			}
		})
	}
	// The Go driver checks every sequence id, which the mariadb client
	// does not: both ways of shifting them.
	const q = "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_version'"
	if s, err := goMySQL(t, m, f, addr, q); err != nil || s != "TLSv1.3" {
		t.Fatalf("go-sql-driver with TLS: %q, %v", s, err)
	}
	if s, err := goMySQL(t, m, nil, addr, q); err != nil || s != "TLSv1.3" {
		t.Fatalf("go-sql-driver in plain: %q, %v", s, err)
	}
}
