package l4

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// preamble reads a goroutine-run client's preamble (a PROXY header, before
// its TLS ClientHello) as the loop reads one: peeked until the parser has
// it whole, then exactly that consumed, so the handshake's bytes stay in
// the socket. A client the parser expects none from goes on at once (its
// bytes then must be a handshake, which a stray PROXY header is not).
func (c *termConn) preamble() (End, error) {
	p := c.s.Preamble
	if p == nil {
		return EndNone, nil
	}
	if _, err := p.ParsePreamble(nil, &c.cl); err == nil {
		return EndNone, nil
	}
	peer := c.cl.Addr // the socket's, until the preamble names another
	raw := c.raw[sideClient]
	raw.SetReadDeadline(time.Now().Add(c.s.preambleTimeout()))
	defer raw.SetReadDeadline(time.Time{})
	buf := termBufs.Get().(*[termBufSize]byte)
	defer termBufs.Put(buf)
	n, m, err := c.peekPreamble(buf[:])
	switch {
	case errors.Is(err, errPreambleClosed):
		return EndClientClosed, err
	case errors.Is(err, errPreambleRead):
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return c.forced(EndPreambleTimeout), err
		}
		return c.forced(EndClientReset), err
	case err != nil:
		return EndBadPreamble, fmt.Errorf("reading the preamble: %w", err)
	case m < 0 || m > n:
		return EndBadPreamble, fmt.Errorf("preamble parser returned %d of %d bytes", m, n)
	}
	if _, err := io.ReadFull(raw, buf[:m]); err != nil {
		return EndClientReset, fmt.Errorf("consuming the preamble: %w", err)
	}
	if c.cl.Addr != peer && !c.cl.Via.IsValid() {
		c.cl.Via = peer
	}
	return EndNone, nil
}

var (
	errPreambleClosed = errors.New("the client closed before its preamble")
	errPreambleRead   = errors.New("reading the preamble")
)

// peekPreamble peeks into buf until the parser has a whole preamble, and
// returns how many bytes were peeked and how long the preamble is.
func (c *termConn) peekPreamble(buf []byte) (n, m int, err error) {
	rc, err := c.raw[sideClient].SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var perr error
	rerr := rc.Read(func(fd uintptr) bool {
		k, _, e := unix.Recvfrom(int(fd), buf, unix.MSG_PEEK)
		switch {
		case e == unix.EAGAIN || e == unix.EINTR:
			return false // Go's poller waits for the socket
		case e != nil:
			perr = fmt.Errorf("%w: %w", errPreambleRead, e)
			return true
		case k == 0:
			perr = errPreambleClosed
			return true
		case k == n:
			// Nothing new since the last peek: wait for the next
			// bytes (the poller is edge-triggered).
			return false
		}
		n = k
		m, perr = c.s.Preamble.ParsePreamble(buf[:k], &c.cl)
		if errors.Is(perr, ErrNeedMore) {
			if k == len(buf) {
				perr = fmt.Errorf("no complete preamble in %d bytes", k)
				return true
			}
			return false
		}
		return true
	})
	if rerr != nil {
		return n, 0, fmt.Errorf("%w: %w", errPreambleRead, rerr)
	}
	return n, m, perr
}
