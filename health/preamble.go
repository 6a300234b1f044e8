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

// withPreambleSent sends ctx's preamble, if any, on a new connection c: on
// TCP once, first; on UDP in front of every datagram written, as each
// datagram carries its own PROXY header (and a v2 LOCAL header is the
// only kind a UDP pool sends).
func withPreambleSent(ctx context.Context, network string, c net.Conn) (net.Conn, error) {
	b, _ := ctx.Value(preambleKey{}).([]byte)
	switch {
	case len(b) == 0:
		return c, nil
	case network == "udp":
		return &prefixedConn{Conn: c, prefix: b}, nil
	}
	if _, err := c.Write(b); err != nil {
		return nil, shortError("send preamble", err)
	}
	return c, nil
}

// prefixedConn writes prefix in front of each datagram. It is for health
// checks only, which send a datagram or two: the data path never wraps a
// socket.
type prefixedConn struct {
	net.Conn
	prefix []byte
}

// Write sends prefix and p as one datagram and reports p's length.
func (c *prefixedConn) Write(p []byte) (int, error) {
	if _, err := c.Conn.Write(append(append([]byte(nil), c.prefix...), p...)); err != nil {
		return 0, err
	}
	return len(p), nil
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
	pc, err := withPreambleSent(ctx, network, c)
	if err != nil {
		c.Close()
		return nil, err
	}
	return pc, nil
}
