package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"sluice/internal/dbtest"
)

// TestUntrustedServerFirst checks that a proxy_protocol listener does not
// hold up a client it takes no header from: MariaDB speaks first, and its
// greeting reaches a client at 127.0.0.2 (outside proxy_protocol_from) at
// once, not after the 10s preamble timeout; a login through the listener
// works.
func TestUntrustedServerFirst(t *testing.T) {
	db := dbtest.StartMariaDB(t)
	addr := freePort(t)
	p := startSluice(t, nil, "-c", writeFile(t, fmt.Sprintf(`[listeners.db]
bind = %q
pool = "db"
proxy_protocol = "any"
proxy_protocol_from = ["127.0.0.3"]
proxy_protocol_timeout = "10s"
[pools.db]
[[pools.db.backends]]
address = %q
`, addr, db.Addr)))
	p.waitOutput(t, "listening")

	c := dialFrom(t, "127.0.0.2", addr)
	defer c.Close()
	start := time.Now()
	c.SetReadDeadline(start.Add(20 * time.Second))
	var hdr [5]byte // packet length (3), sequence (1), protocol version (1)
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatalf("no greeting: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second || hdr[4] != 10 {
		t.Fatalf("greeting %x after %v: want protocol 10 at once", hdr, d)
	}

	cfg := db.Config()
	cfg.Addr = addr // from 127.0.0.1, also untrusted
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sdb := sql.OpenDB(conn)
	defer sdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var one int
	if err := sdb.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("query through the listener: %d, %v", one, err)
	}
}
