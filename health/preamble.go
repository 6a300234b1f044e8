package health

import (
	"context"
	"net"
)

// preambleKey carries a check's Preamble from the checker to dial, the one
// place every TCP prober (and, through dialDriver, every database driver)
// opens its connection, so no prober needs to know about it.
type preambleKey struct{}

// withPreamble returns ctx carrying b for dial to send first.
func withPreamble(ctx context.Context, b []byte) context.Context {
	if len(b) == 0 {
		return ctx
	}
	return context.WithValue(ctx, preambleKey{}, b)
}

// sendPreamble writes ctx's preamble, if any, on a new TCP connection.
// UDP checks send none: each datagram would need its own, and the probers
// that use UDP speak DNS or a user's payload, which a header would break.
func sendPreamble(ctx context.Context, network string, c net.Conn) error {
	b, _ := ctx.Value(preambleKey{}).([]byte)
	if len(b) == 0 || network != "tcp" {
		return nil
	}
	if _, err := c.Write(b); err != nil {
		return shortError("send preamble", err)
	}
	return nil
}

// dialDriver is a database driver's dialer (pgx's and go-sql-driver/mysql's
// DialFunc) that sends the preamble too. It dials as the drivers do by
// default and returns their kind of errors, which their callers turn into
// reasons.
func dialDriver(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if err := sendPreamble(ctx, network, c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}
