package health

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Redis checks a Redis server by speaking RESP itself: optional AUTH, then PING, which
// must answer +PONG, then, when Role is set, ROLE. The commands go out in one write and
// the connection is closed after the last reply, so a probe costs one round trip.
//
// A replica counts as a replica whatever the state of its link to the primary; one that
// is still loading its dataset answers PING with LOADING and fails the probe.
type Redis struct {
	// Username is the ACL user AUTH names (Redis 6 and later). Empty sends AUTH with the
	// password alone, which logs in as the default user.
	Username string
	// Password is sent with AUTH before PING. Empty sends no AUTH.
	Password string
	// Role, when not RoleAny, requires ROLE to answer "master" (RolePrimary) or "slave"
	// (RoleReplica).
	Role Role
}

// Probe checks the Redis server at addr. Its errors read, for example:
//
//	redis AUTH: WRONGPASS invalid username-password pair or user is disabled.
//	redis is loading its dataset: LOADING Redis is loading the dataset in memory
//	role replica, want primary
//	timeout after 2s waiting for the PING reply
//	connect: connection refused
func (r Redis) Probe(ctx context.Context, addr netip.AddrPort) error {
	start := time.Now()
	conn, stop, err := dbDial(ctx, addr, start)
	if err != nil {
		return err
	}
	defer conn.Close()
	defer stop()

	if _, err := conn.Write(r.commands()); err != nil {
		return dbFail(ctx, start, "sending redis commands", err)
	}
	br := newRESPReader(conn)
	reply := func(what string) (respValue, error) {
		v, err := readRESP(br)
		if err != nil {
			return v, dbFail(ctx, start, "waiting for the "+what+" reply", err)
		}
		return v, nil
	}
	if r.Password != "" {
		v, err := reply("AUTH")
		if err != nil {
			return err
		}
		if err := v.err(); err != nil {
			return fmt.Errorf("redis AUTH: %w", err)
		}
	}
	v, err := reply("PING")
	if err != nil {
		return err
	}
	if err := checkPong(v); err != nil {
		return err
	}
	if r.Role == RoleAny {
		return nil
	}
	if v, err = reply("ROLE"); err != nil {
		return err
	}
	return r.checkRole(v)
}

// commands returns the probe's pipelined commands. If AUTH fails, PING answers NOAUTH;
// the AUTH reply is read first and its error reported.
func (r Redis) commands() []byte {
	var b []byte
	switch {
	case r.Password != "" && r.Username != "":
		b = appendCommand(b, "AUTH", r.Username, r.Password)
	case r.Password != "":
		b = appendCommand(b, "AUTH", r.Password)
	}
	b = appendCommand(b, "PING")
	if r.Role != RoleAny {
		b = appendCommand(b, "ROLE")
	}
	return b
}

// checkPong accepts PING's +PONG.
func checkPong(v respValue) error {
	err := v.err()
	switch {
	case err != nil && strings.HasPrefix(v.str, "LOADING"):
		// Redis answers LOADING while it reads its RDB or AOF file at start, or a
		// replica its primary's snapshot: it cannot serve yet.
		return fmt.Errorf("redis is loading its dataset: %w", err)
	case err != nil:
		return fmt.Errorf("redis PING: %w", err)
	case v.kind != '+' || v.str != "PONG":
		return fmt.Errorf("redis PING: got %s, want +PONG", v.describe())
	}
	return nil
}

// checkRole compares ROLE's first element with r.Role.
func (r Redis) checkRole(v respValue) error {
	if err := v.err(); err != nil {
		return fmt.Errorf("redis ROLE: %w", err)
	}
	if v.kind != '*' || len(v.elems) == 0 || v.elems[0].kind != '$' {
		return fmt.Errorf("redis ROLE: got %s, want an array naming the role", v.describe())
	}
	var got string
	switch name := v.elems[0].str; name {
	case "master":
		got = RolePrimary.String()
	case "slave":
		got = RoleReplica.String()
	default: // "sentinel"
		got = fmt.Sprintf("%.32q", name)
	}
	if got != r.Role.String() {
		return &dbReason{fmt.Sprintf("role %s, want %s", got, r.Role), ErrWrongRole}
	}
	return nil
}

// describe renders a reply for an error message, cut short.
func (v respValue) describe() string {
	switch {
	case v.null:
		return "a null reply"
	case v.kind == '*':
		return fmt.Sprintf("an array of %d", len(v.elems))
	}
	return fmt.Sprintf("%c%.64q", v.kind, v.str)
}
