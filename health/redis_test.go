package health

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"sluice/internal/dbtest"
)

// replying returns a server that answers every connection with reply, then reads until
// the client closes. A nil reply never answers.
func replying(t *testing.T, reply string) func(net.Conn) {
	return func(c net.Conn) {
		if reply != "" {
			if _, err := io.WriteString(c, reply); err != nil {
				t.Errorf("fake server: %v", err)
			}
		}
		_, _ = io.Copy(io.Discard, c)
	}
}

// TestRedisFake checks the reasons for replies a healthy test server never gives.
func TestRedisFake(t *testing.T) {
	const primaryRole = "*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"
	for _, tc := range []struct {
		name  string
		redis Redis
		reply string
		want  string // "" for success, else part of the error
	}{
		{"pong", Redis{}, "+PONG\r\n", ""},
		{"loading", Redis{}, "-LOADING Redis is loading the dataset in memory\r\n",
			"redis is loading its dataset: LOADING Redis is loading"},
		{"noauth", Redis{}, "-NOAUTH Authentication required.\r\n", "redis PING: NOAUTH"},
		{"not pong", Redis{}, "$4\r\nPONG\r\n", `redis PING: got $"PONG", want +PONG`},
		{"not redis", Redis{}, "SSH-2.0-OpenSSH_9.2\r\n", "malformed redis reply"},
		{"auth then pong", Redis{Password: "pw"}, "+OK\r\n+PONG\r\n", ""},
		{"auth refused", Redis{Password: "pw"},
			"-WRONGPASS invalid username-password pair or user is disabled.\r\n-NOAUTH x\r\n",
			"redis AUTH: WRONGPASS invalid username-password pair"},
		{"primary", Redis{Role: RolePrimary}, "+PONG\r\n" + primaryRole, ""},
		{"primary, want replica", Redis{Role: RoleReplica}, "+PONG\r\n" + primaryRole,
			"role primary, want replica"},
		{"sentinel", Redis{Role: RolePrimary}, "+PONG\r\n*2\r\n$8\r\nsentinel\r\n*0\r\n",
			`role "sentinel", want primary`},
		{"role refused", Redis{Role: RolePrimary},
			"+PONG\r\n-NOPERM this user has no permissions to run the 'role' command\r\n",
			"redis ROLE: NOPERM"},
		{"role not an array", Redis{Role: RolePrimary}, "+PONG\r\n+master\r\n",
			"redis ROLE: got +\"master\", want an array"},
		{"closed before role", Redis{Role: RolePrimary}, "+PONG\r\n",
			"waiting for the ROLE reply"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			serve := replying(t, tc.reply)
			if tc.name == "closed before role" {
				serve = func(c net.Conn) { io.WriteString(c, tc.reply) }
			}
			wantResult(t, probe(t, tc.redis, listenTCP(t, serve)), tc.want)
		})
	}
}

// TestRedisUnreachable checks the reasons for a refused connect and a silent server.
func TestRedisUnreachable(t *testing.T) {
	wantResult(t, probe(t, Redis{}, deadAddr(t)), "connect: connection refused")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := Redis{}.Probe(ctx, listenTCP(t, replying(t, "")))
	wantResult(t, err, "timeout after 300ms waiting for the PING reply")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("%v does not wrap a timeout", err)
	}

	// Cancelling (a checker stopping) ends a probe at once, whatever its deadline.
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	if err := (Redis{}).Probe(ctx, listenTCP(t, replying(t, ""))); err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("cancelled probe returned %v after %v", err, time.Since(start))
	}
}

// TestRedisRoles runs a real primary and replica, checks the role split, then swaps
// them with REPLICAOF and checks that the probes follow.
func TestRedisRoles(t *testing.T) {
	primary := dbtest.StartRedis(t, dbtest.RedisOptions{})
	replica := dbtest.StartRedis(t, dbtest.RedisOptions{ReplicaOf: primary})
	check := func(t *testing.T, primary, replica *dbtest.Redis) {
		t.Helper()
		wantResult(t, probe(t, Redis{}, primary.Addr), "")
		wantResult(t, probe(t, Redis{}, replica.Addr), "")
		wantResult(t, probe(t, Redis{Role: RolePrimary}, primary.Addr), "")
		wantResult(t, probe(t, Redis{Role: RoleReplica}, replica.Addr), "")
		err := probe(t, Redis{Role: RolePrimary}, replica.Addr)
		wantResult(t, err, "role replica, want primary")
		if !errors.Is(err, ErrWrongRole) {
			t.Errorf("%v is not ErrWrongRole", err)
		}
		wantResult(t, probe(t, Redis{Role: RoleReplica}, primary.Addr), "role primary, want replica")
	}
	t.Run("before", func(t *testing.T) { check(t, primary, replica) })
	t.Run("swapped", func(t *testing.T) {
		replica.Promote(t)
		primary.ReplicaOf(t, replica)
		check(t, replica, primary)
	})
}

// TestRedisAuth runs a real server with a password and an ACL user.
func TestRedisAuth(t *testing.T) {
	r := dbtest.StartRedis(t, dbtest.RedisOptions{Password: "s3cret"})
	r.Do(t, "ACL", "SETUSER", "checker", "on", ">checkpw", "+ping", "+role")
	for _, tc := range []struct {
		name  string
		redis Redis
		want  string
	}{
		{"password", Redis{Password: "s3cret"}, ""},
		{"password and role", Redis{Password: "s3cret", Role: RolePrimary}, ""},
		{"wrong password", Redis{Password: "nope"}, "redis AUTH: WRONGPASS"},
		{"no password", Redis{}, "redis PING: NOAUTH"},
		{"acl user", Redis{Username: "checker", Password: "checkpw", Role: RolePrimary}, ""},
		{"acl user, wrong password", Redis{Username: "checker", Password: "s3cret"},
			"redis AUTH: WRONGPASS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantResult(t, probe(t, tc.redis, r.Addr), tc.want)
		})
	}
	t.Run("acl user without role permission", func(t *testing.T) {
		r.Do(t, "ACL", "SETUSER", "checker", "-role")
		p := Redis{Username: "checker", Password: "checkpw", Role: RolePrimary}
		wantResult(t, probe(t, p, r.Addr), "redis ROLE: NOPERM")
	})
}
