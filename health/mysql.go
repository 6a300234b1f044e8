package health

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MySQL checks a MySQL or MariaDB server in one of two ways.
//
// With no User it reads the server's greeting (a protocol 10 handshake) and closes the
// connection, as HAProxy's mysql-check does without a user. An ERR packet instead of the
// greeting ("Too many connections") fails the probe. The server counts such a connection
// as aborted, and blocks a host after max_connect_errors of them in a row unless a
// successful login from that host comes in between: on a quiet backend reached from
// another host, give a User.
//
// With a User it logs in for real with go-sql-driver/mysql (mysql_native_password,
// caching_sha2_password, ed25519), reads SELECT @@global.read_only when Role is set (0 on a
// primary, 1 on a replica), and quits. TLS is used when the server offers it, without
// verifying its certificate; otherwise caching_sha2_password fetches the server's RSA key
// so that the password never crosses the network in clear.
type MySQL struct {
	// User to log in as. Empty reads the greeting only, and then Role must be RoleAny.
	User string
	// Password of User; empty for a user without one.
	Password string
	// Database to select at login. Empty selects none.
	Database string
	// Role, when not RoleAny, requires @@global.read_only to be 0 (RolePrimary) or 1
	// (RoleReplica).
	Role Role
}

// Probe checks the MySQL server at addr. Its errors read, for example:
//
//	logging in to mysql as "app": Error 1045 (28000): Access denied for user 'app'@'10.0.0.9' (using password: YES)
//	mysql refused the connection: error 1040: Too many connections
//	role replica, want primary
//	timeout after 2s waiting for the mysql greeting
//	connect: connection refused
func (m MySQL) Probe(ctx context.Context, addr netip.AddrPort) error {
	if m.User == "" {
		if m.Role != RoleAny {
			return fmt.Errorf("mysql role check: no user to log in as")
		}
		return greet(ctx, addr)
	}
	return m.login(ctx, addr)
}

// greet reads the greeting and closes.
func greet(ctx context.Context, addr netip.AddrPort) error {
	start := time.Now()
	conn, stop, err := dbDial(ctx, addr, start)
	if err != nil {
		return err
	}
	defer conn.Close()
	defer stop()
	_, err = readGreeting(conn)
	if se := (*mysqlServerError)(nil); errors.As(err, &se) {
		return fmt.Errorf("mysql refused the connection: %w", err)
	}
	if err != nil {
		return dbFail(ctx, start, "waiting for the mysql greeting", err)
	}
	return nil
}

// login logs in with the driver and checks the role.
func (m MySQL) login(ctx context.Context, addr netip.AddrPort) error {
	start := time.Now()
	doing := "logging in to mysql as " + strconv.Quote(m.User)
	connector, err := mysql.NewConnector(m.config(addr))
	if err != nil {
		return fmt.Errorf("%s: %w", doing, err)
	}
	conn, err := connector.Connect(ctx)
	if err != nil {
		if me := (*mysql.MySQLError)(nil); errors.As(err, &me) {
			return fmt.Errorf("%s: %w", doing, me)
		}
		return dbFail(ctx, start, doing, err)
	}
	defer conn.Close() // sends COM_QUIT
	if m.Role == RoleAny {
		return nil
	}
	readOnly, err := queryReadOnly(ctx, conn)
	if err != nil {
		return dbFail(ctx, start, "querying @@global.read_only", err)
	}
	got := RolePrimary
	if readOnly {
		got = RoleReplica
	}
	if got != m.Role {
		return &dbReason{fmt.Sprintf("role %s, want %s", got, m.Role), ErrWrongRole}
	}
	return nil
}

// config builds the driver's configuration for one login. A fresh one each time: the
// driver changes it when it falls back from TLS to plain TCP.
func (m MySQL) config(addr netip.AddrPort) *mysql.Config {
	cfg := mysql.NewConfig()
	cfg.Net = "tcp"
	cfg.Addr = addr.String()
	cfg.DialFunc = dialDriver
	cfg.User = m.User
	cfg.Passwd = m.Password
	cfg.DBName = m.Database
	cfg.TLSConfig = "preferred"
	// Probe errors are returned, not printed: the driver's default logger writes to
	// stderr.
	cfg.Logger = &mysql.NopLogger{}
	return cfg
}

// queryReadOnly reads @@global.read_only on conn.
func queryReadOnly(ctx context.Context, conn driver.Conn) (bool, error) {
	q, ok := conn.(driver.QueryerContext)
	if !ok {
		return false, errors.New("the mysql driver cannot run queries on a connection")
	}
	rows, err := q.QueryContext(ctx, "SELECT @@global.read_only", nil)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	v := make([]driver.Value, 1)
	if err := rows.Next(v); err != nil {
		if errors.Is(err, io.EOF) {
			return false, errors.New("no row")
		}
		return false, err
	}
	switch x := v[0].(type) {
	case int64: // the driver parses integer columns of the text protocol
		return x != 0, nil
	case []byte:
		return string(x) != "0", nil
	}
	return false, fmt.Errorf("read_only is %T %v, want 0 or 1", v[0], v[0])
}
