package health

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"sluice/internal/dbtest"
)

// pgMessage builds a backend message.
func pgMessage(typ byte, body ...[]byte) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	for _, p := range body {
		b = append(b, p...)
	}
	binary.BigEndian.PutUint32(b[1:], uint32(len(b)-1))
	return b
}

// pgAuth is an Authentication message with the given code.
func pgAuth(code uint32) []byte {
	return pgMessage('R', binary.BigEndian.AppendUint32(nil, code))
}

// pgErrorResponse is an ErrorResponse with severity, code and message.
func pgErrorResponse(code, msg string) []byte {
	return pgMessage('E', []byte("SFATAL\x00VFATAL\x00C"+code+"\x00M"+msg+"\x00\x00"))
}

// startupServer reads one StartupMessage, writes reply, then reads to the end, or
// closes at once if hangUp.
func startupServer(t *testing.T, reply []byte, hangUp bool) func(net.Conn) {
	return func(c net.Conn) {
		var n [4]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			t.Errorf("fake postgres: %v", err)
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(n[:])-4)
		if _, err := io.ReadFull(c, body); err != nil || !bytes.Contains(body, []byte("user\x00sluice\x00")) {
			t.Errorf("fake postgres: startup message %q, %v", body, err)
		}
		c.Write(reply)
		if !hangUp {
			io.Copy(io.Discard, c)
		}
	}
}

func TestPostgresStartupFake(t *testing.T) {
	afterOK := bytes.Join([][]byte{pgAuth(0), pgMessage('S', []byte("server_version\x0015.8\x00")),
		pgMessage('K', make([]byte, 8)), pgMessage('Z', []byte("I"))}, nil)
	for _, tc := range []struct {
		name  string
		reply []byte
		want  string
	}{
		{"scram requested", pgAuth(10), ""},
		{"md5 requested", append(pgAuth(5), 1, 2, 3, 4), ""},
		{"trusted", afterOK, ""},
		{"trusted, cut short", pgAuth(0), "reading the postgres login: EOF"},
		{"no pg_hba entry", pgErrorResponse("28000", `no pg_hba.conf entry for host "10.0.0.9"`), ""},
		{"no database", pgErrorResponse("3D000", `database "postgres" does not exist`), ""},
		{"starting up", pgErrorResponse("57P03", "the database system is starting up"),
			"postgres refused the startup: FATAL: the database system is starting up (SQLSTATE 57P03)"},
		{"too many", pgErrorResponse("53300", "sorry, too many clients already"),
			"(SQLSTATE 53300)"},
		{"not postgres", []byte("HTTP/1.1 400 Bad Request\r\n\r\n"), "malformed postgres reply"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hangUp := tc.name == "trusted, cut short"
			wantResult(t, probe(t, Postgres{}, listenTCP(t, startupServer(t, tc.reply, hangUp))), tc.want)
		})
	}
	wantResult(t, probe(t, Postgres{}, deadAddr(t)), "connect: connection refused")
	wantResult(t, probe(t, Postgres{Role: RolePrimary}, deadAddr(t)),
		`logging in to postgres as "sluice" (no user set: a role check logs in, give user and password): connection refused`)
}

// FuzzPostgresStartupReply feeds the startup reply reader arbitrary bytes, as a broken or
// hostile server would, then the drain that follows AuthenticationOk.
func FuzzPostgresStartupReply(f *testing.F) {
	f.Add(pgAuth(10))
	f.Add(append(pgAuth(0), pgMessage('Z', []byte("I"))...))
	f.Add(pgErrorResponse("57P03", "the database system is starting up"))
	f.Add(pgMessage('E', []byte("Sx\x00")))
	f.Add([]byte("E\x00\x00\x00\x04"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		authOK, err := readStartupReply(r)
		var se *pgServerError
		if errors.As(err, &se) && (se.code == "" || se.message == "") {
			t.Fatalf("error response without code or message accepted: %+v", se)
		}
		if authOK {
			_ = drainToReady(r)
		}
	})
}

// TestPostgres runs a real primary and a hot standby made with pg_basebackup -R: the
// startup exchange, SCRAM logins, the primary/replica split and a promotion.
func TestPostgres(t *testing.T) {
	primary := dbtest.StartPostgres(t)
	standby := dbtest.StartStandby(t, primary)
	// The server really asks for SCRAM: a stored SCRAM verifier and SCRAM in pg_hba.conf.
	if v := primary.QueryString(t, "SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = $1", primary.User); v != "SCRAM-SHA-256$" {
		t.Fatalf("password stored as %q, want a SCRAM-SHA-256 verifier", v)
	}
	if m := primary.QueryString(t, "SELECT string_agg(DISTINCT auth_method, ',') FROM pg_hba_file_rules WHERE type = 'host'"); m != "scram-sha-256" {
		t.Fatalf("pg_hba.conf host lines use %q, want scram-sha-256", m)
	}
	login := Postgres{User: primary.User, Password: primary.Password}
	with := func(role Role) Postgres { p := login; p.Role = role; return p }

	for _, tc := range []struct {
		name   string
		probe  Postgres
		server *dbtest.Postgres
		want   string
	}{
		{"startup exchange, primary", Postgres{}, primary, ""},
		{"startup exchange, standby", Postgres{}, standby, ""},
		{"startup exchange, real user", Postgres{User: "postgres"}, primary, ""},
		{"scram login", login, primary, ""},
		{"scram login, standby", login, standby, ""},
		{"wrong password", Postgres{User: "postgres", Password: "wrong"}, primary,
			`logging in to postgres as "postgres": FATAL: password authentication failed for user "postgres" (SQLSTATE 28P01)`},
		{"no such database", Postgres{User: "postgres", Password: primary.Password, Database: "nope"},
			primary, `database "nope" does not exist (SQLSTATE 3D000)`},
		{"role check without user", Postgres{Role: RolePrimary}, primary,
			`logging in to postgres as "sluice" (no user set: a role check logs in, give user and password):`},
		{"primary wanted, primary", with(RolePrimary), primary, ""},
		{"replica wanted, standby", with(RoleReplica), standby, ""},
		{"primary wanted, standby", with(RolePrimary), standby, "role replica, want primary"},
		{"replica wanted, primary", with(RoleReplica), primary, "role primary, want replica"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantResult(t, probe(t, tc.probe, tc.server.Addr), tc.want)
		})
	}
	// Issue 8: the bare check starts up as "sluice", a role these servers
	// do not have; the server still answers (SCRAM request, or 28000 with
	// trust), which shows it is up.
	t.Run("startup exchange, no such role", func(t *testing.T) {
		if n := primary.QueryString(t, "SELECT count(*)::text FROM pg_roles WHERE rolname = 'sluice'"); n != "0" {
			t.Fatalf("%s roles named sluice, want none", n)
		}
		wantResult(t, probe(t, Postgres{}, primary.Addr), "")
		wantResult(t, probe(t, Postgres{User: "nobody", Database: "nowhere"}, primary.Addr), "")
	})
	t.Run("startup exchange, connection limit", func(t *testing.T) {
		fillPostgres(t, primary)
		err := probe(t, Postgres{}, primary.Addr)
		wantResult(t, err, "postgres refused the startup: FATAL: sorry, too many clients already (SQLSTATE 53300)")
	})
	wantResult(t, probe(t, Postgres{}, primary.Addr), "") // the connections are closed again
	t.Run("promotion", func(t *testing.T) {
		standby.Promote(t)
		wantResult(t, probe(t, with(RolePrimary), standby.Addr), "")
		wantResult(t, probe(t, with(RoleReplica), standby.Addr), "role primary, want replica")
	})
}

// fillPostgres opens superuser connections to p until it refuses one with
// 53300 (too many clients). When t ends it closes them and waits until the
// server has let their backends go: a closed connection's backend exits
// after the client has moved on, so the next test would otherwise find
// the server still full.
func fillPostgres(t *testing.T, p *dbtest.Postgres) {
	t.Helper()
	before, err := pgClients(p)
	if err != nil {
		t.Fatalf("counting postgres's clients: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var conns []*pgx.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close(context.Background())
		}
		waitFreed(t, "postgres", before, func() (int, error) { return pgClients(p) })
	})
	for range 500 {
		c, err := p.Connect(ctx)
		if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "53300" {
			return
		}
		if err != nil {
			t.Fatalf("connection %d: %v", len(conns)+1, err)
		}
		conns = append(conns, c)
	}
	t.Fatalf("%d connections and still no 53300", len(conns))
}

// pgClients returns the number of client connections to p, counting the
// one that asks.
func pgClients(p *dbtest.Postgres) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := p.Connect(ctx)
	if err != nil {
		return 0, err
	}
	defer c.Close(ctx)
	var n int
	err = c.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'").Scan(&n)
	return n, err
}

// waitFreed polls count, a server's number of client connections, until it
// is back to at most want once the connections filling the server are
// closed: the server frees their slots after the client has moved on. A
// server still full refuses the connection that counts, which count
// returns as its error.
func waitFreed(t *testing.T, server string, want int, count func() (int, error)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := count()
		if err == nil && n <= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has not freed the filled connections' slots 30s after they were closed: %d client connections, want %d (%v)",
				server, n, want, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
