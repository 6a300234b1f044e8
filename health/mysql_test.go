package health

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"sluice/internal/dbtest"
)

// mysqlPacket frames payload as a MySQL packet with sequence number 0.
func mysqlPacket(payload string) string {
	n := len(payload)
	return string([]byte{byte(n), byte(n >> 8), byte(n >> 16), 0}) + payload
}

// mysqlGreeting is the start of a protocol 10 handshake from version.
func mysqlGreeting(version string) string {
	return mysqlPacket("\x0a" + version + "\x00\x2a\x00\x00\x00abcdefgh\x00")
}

func TestMySQLGreetingFake(t *testing.T) {
	for _, tc := range []struct {
		name, reply, want string
	}{
		{"greeting", mysqlGreeting("10.11.14-MariaDB"), ""},
		{"too many connections", mysqlPacket("\xff\x10\x04Too many connections"),
			"mysql refused the connection: error 1040: Too many connections"},
		{"blocked", mysqlPacket("\xff\x69\x04Host '10.0.0.9' is blocked because of many connection errors"),
			"error 1129: Host '10.0.0.9' is blocked"},
		{"protocol 9", mysqlPacket("\x09old\x00"), "protocol version 9, want 10"},
		{"unterminated version", mysqlPacket("\x0a5.7"), "unterminated server version"},
		{"empty packet", mysqlPacket(""), "first packet of 0 bytes"},
		{"not mysql", "SSH-2.0-OpenSSH_9.2\r\n", "malformed mysql greeting"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantResult(t, probe(t, MySQL{}, listenTCP(t, replying(t, tc.reply))), tc.want)
		})
	}
	wantResult(t, probe(t, MySQL{}, deadAddr(t)), "connect: connection refused")
	wantResult(t, probe(t, MySQL{User: "app"}, deadAddr(t)),
		`logging in to mysql as "app": connection refused`)
	wantResult(t, probe(t, MySQL{Role: RolePrimary}, deadAddr(t)), "no user to log in as")
}

// FuzzMySQLGreeting feeds the greeting reader arbitrary bytes, as a broken or hostile
// server would.
func FuzzMySQLGreeting(f *testing.F) {
	f.Add([]byte(mysqlGreeting("8.0.36")))
	f.Add([]byte(mysqlPacket("\xff\x10\x04Too many connections")))
	f.Add([]byte(mysqlPacket("\xff\x10")))
	f.Add([]byte("\xff\xff\xff\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		version, err := readGreeting(bytes.NewReader(data))
		if err == nil && (len(data) < 6 || data[4] != mysqlProtocol10) {
			t.Fatalf("%q accepted as a greeting from %q", data, version)
		}
		var se *mysqlServerError
		if errors.As(err, &se) && data[4] != mysqlErrPacket {
			t.Fatalf("%q read as an ERR packet", data)
		}
	})
}

// TestMySQL runs a real MariaDB: the greeting, logins, and read_only toggled between
// primary and replica.
func TestMySQL(t *testing.T) {
	m := dbtest.StartMariaDB(t)
	login := MySQL{User: m.User, Password: m.Password}
	with := func(role Role) MySQL { p := login; p.Role = role; return p }
	for _, tc := range []struct {
		name  string
		probe MySQL
		want  string
	}{
		{"greeting", MySQL{}, ""},
		{"login", login, ""},
		{"login with database", MySQL{User: m.User, Password: m.Password, Database: "mysql"}, ""},
		{"wrong password", MySQL{User: m.User, Password: "wrong"},
			`logging in to mysql as "sluice": Error 1045 (28000): Access denied for user 'sluice'@'127.0.0.1' (using password: YES)`},
		{"no such user", MySQL{User: "nobody"}, "Error 1045 (28000): Access denied"},
		{"no such database", MySQL{User: m.User, Password: m.Password, Database: "nope"},
			"Error 1049 (42000): Unknown database 'nope'"},
		{"primary wanted, writable", with(RolePrimary), ""},
		{"replica wanted, writable", with(RoleReplica), "role primary, want replica"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantResult(t, probe(t, tc.probe, m.Addr), tc.want)
		})
	}
	t.Run("read_only on", func(t *testing.T) {
		m.Exec(t, "SET GLOBAL read_only = ON")
		err := probe(t, with(RolePrimary), m.Addr)
		wantResult(t, err, "role replica, want primary")
		if !errors.Is(err, ErrWrongRole) {
			t.Errorf("%v is not ErrWrongRole", err)
		}
		wantResult(t, probe(t, with(RoleReplica), m.Addr), "")
		wantResult(t, probe(t, MySQL{}, m.Addr), "")
	})
	// Issue 8: without a user the check reads the greeting, which a live
	// server sends whoever connects: no account is needed.
	t.Run("greeting, no such user", func(t *testing.T) {
		wantResult(t, probe(t, MySQL{User: "nobody"}, m.Addr), "Error 1045 (28000): Access denied")
		wantResult(t, probe(t, MySQL{}, m.Addr), "")
	})
	t.Run("greeting, connection limit", func(t *testing.T) {
		fillMariaDB(t, m)
		wantResult(t, probe(t, MySQL{}, m.Addr), "mysql refused the connection: error 1040: Too many connections")
	})
	wantResult(t, probe(t, MySQL{}, m.Addr), "") // the connections are closed again
	t.Run("read_only off", func(t *testing.T) {
		m.Exec(t, "SET GLOBAL read_only = OFF")
		wantResult(t, probe(t, with(RolePrimary), m.Addr), "")
		wantResult(t, probe(t, with(RoleReplica), m.Addr), "role primary, want replica")
	})
}

// fillMariaDB opens connections to m until it refuses one with 1040 (too
// many connections). m's user has every privilege, so it also takes the one
// connection kept for SUPER: after that the server refuses with an ERR
// packet instead of the greeting. When t ends it closes them and waits
// until the server has let their threads go: a closed connection's thread
// ends after the client has moved on, so the next test would otherwise
// find the server still full.
func fillMariaDB(t *testing.T, m *dbtest.MariaDB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	connector, err := mysql.NewConnector(m.Config())
	if err != nil {
		t.Fatal(err)
	}
	before, err := mysqlClients(connector)
	if err != nil {
		t.Fatalf("counting mariadb's clients: %v", err)
	}
	var conns []driver.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
		waitFreed(t, "mariadb", before, func() (int, error) { return mysqlClients(connector) })
	})
	for range 500 {
		c, err := connector.Connect(ctx)
		if me := (*mysql.MySQLError)(nil); errors.As(err, &me) && me.Number == 1040 {
			return
		}
		if err != nil {
			t.Fatalf("connection %d: %v", len(conns)+1, err)
		}
		conns = append(conns, c)
	}
	t.Fatalf("%d connections and still no 1040", len(conns))
}

// mysqlClients returns the server's Threads_connected, counting the
// connection that asks.
func mysqlClients(c driver.Connector) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	db := sql.OpenDB(c)
	defer db.Close()
	var n int
	err := db.QueryRowContext(ctx, "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'THREADS_CONNECTED'").Scan(&n)
	return n, err
}
