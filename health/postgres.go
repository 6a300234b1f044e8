package health

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Postgres checks a PostgreSQL server in one of two ways.
//
// With no Password and no Role it does what HAProxy's pgsql-check does: it sends a
// StartupMessage for User and Database and counts any authentication request as alive,
// without logging in. An ErrorResponse that refuses this user, host or database (SQLSTATE
// class 28, 3D000) also shows a live server; others, such as "the database system is
// starting up" (57P03) or "too many connections" (53300), fail the probe. If pg_hba.conf
// has no entry for the role, the server logs each probe as a FATAL line: name a role it
// accepts.
//
// With a Password or a Role it logs in for real with pgx (SCRAM-SHA-256, MD5 or trust,
// whatever the server asks), runs SELECT pg_is_in_recovery() when Role is set (false on
// a primary, true on a hot standby), and closes the connection. The connection is plain
// TCP: SCRAM and MD5 never send the password itself, but the "password" method of
// pg_hba.conf would, so do not use it for the checking role.
type Postgres struct {
	// User is the role to start up as. Empty means "sluice".
	User string
	// Password makes the probe log in. Empty logs in only when Role is set (for roles
	// that pg_hba.conf trusts).
	Password string
	// Database to connect to. Empty means "postgres", which every cluster has.
	Database string
	// Role, when not RoleAny, requires pg_is_in_recovery() to be false (RolePrimary) or
	// true (RoleReplica).
	Role Role
}

func (p Postgres) user() string {
	if p.User == "" {
		return "sluice"
	}
	return p.User
}

func (p Postgres) database() string {
	if p.Database == "" {
		return "postgres"
	}
	return p.Database
}

// Probe checks the PostgreSQL server at addr. Its errors read, for example:
//
//	logging in to postgres as "app": FATAL: password authentication failed for user "app" (SQLSTATE 28P01)
//	postgres refused the startup: FATAL: the database system is starting up (SQLSTATE 57P03)
//	role replica, want primary
//	timeout after 2s logging in to postgres as "app"
//	connect: connection refused
func (p Postgres) Probe(ctx context.Context, addr netip.AddrPort) error {
	if p.Password == "" && p.Role == RoleAny {
		return p.startup(ctx, addr)
	}
	return p.login(ctx, addr)
}

// startup performs the startup exchange without logging in.
func (p Postgres) startup(ctx context.Context, addr netip.AddrPort) error {
	start := time.Now()
	conn, stop, err := dbDial(ctx, addr, start)
	if err != nil {
		return err
	}
	defer conn.Close()
	defer stop()

	msg := appendStartupMessage(nil, "user", p.user(), "database", p.database(),
		"application_name", "sluice health check")
	if _, err := conn.Write(msg); err != nil {
		return dbFail(ctx, start, "sending the postgres startup message", err)
	}
	br := bufio.NewReader(conn)
	authOK, err := readStartupReply(br)
	if se := (*pgServerError)(nil); errors.As(err, &se) {
		if se.alive() {
			return nil
		}
		return fmt.Errorf("postgres refused the startup: %w", err)
	}
	if err != nil {
		return dbFail(ctx, start, "waiting for the postgres startup reply", err)
	}
	if !authOK {
		// The server asked for a password: it is up. Closing now ends the exchange
		// without a line in its log (the server treats EOF during authentication as a
		// client that gave up).
		return nil
	}
	// pg_hba.conf trusts the role, so this is a real login: finish it politely.
	if err := drainToReady(br); err != nil {
		return dbFail(ctx, start, "reading the postgres login", err)
	}
	_, _ = conn.Write(pgTerminate) // best effort: the server is healthy either way
	return nil
}

// login logs in with pgx and checks the role.
func (p Postgres) login(ctx context.Context, addr netip.AddrPort) error {
	start := time.Now()
	cfg, err := p.connConfig(addr)
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return p.loginError(ctx, start, err)
	}
	// Close sends Terminate; a fresh context because ctx may be spent by then, and a
	// short one because the answer no longer matters.
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if p.Role == RoleAny {
		return nil
	}
	var inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return dbFail(ctx, start, "querying pg_is_in_recovery()", err)
	}
	got := RolePrimary
	if inRecovery {
		got = RoleReplica
	}
	if got != p.Role {
		return &dbReason{fmt.Sprintf("role %s, want %s", got, p.Role), ErrWrongRole}
	}
	return nil
}

// connConfig builds the pgx configuration for one login. Every field that matters is set
// here so that the PG* environment variables and ~/.pgpass of the sluice process do not
// change what is checked.
func (p Postgres) connConfig(addr netip.AddrPort) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig("sslmode=disable")
	if err != nil {
		return nil, fmt.Errorf("configuring the postgres login: %w", err)
	}
	cfg.Host = addr.Addr().String()
	cfg.Port = addr.Port()
	cfg.User = p.user()
	cfg.Password = p.Password
	cfg.Database = p.database()
	cfg.Fallbacks = nil
	cfg.ConnectTimeout = 0 // ctx's deadline applies
	cfg.DialFunc = dialDriver
	cfg.RuntimeParams = map[string]string{"application_name": "sluice health check"}
	// The simple protocol runs the query in one round trip, without preparing it.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	return cfg, nil
}

// loginError turns pgx's connect error into a reason: the server's own error when it sent
// one, else the network failure.
func (p Postgres) loginError(ctx context.Context, start time.Time, err error) error {
	doing := "logging in to postgres as " + strconv.Quote(p.user())
	if p.User == "" {
		// Only a role check logs in without a user (issue 8): the
		// server is up, but answering which role it has needs a login
		// it accepts, which the bare check's default role rarely is.
		doing += " (no user set: a role check logs in, give user and password)"
	}
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", doing, pe)
	}
	return dbFail(ctx, start, doing, err)
}
