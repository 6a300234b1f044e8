package health

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The startup exchange of the PostgreSQL protocol, version 3.0
// (https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP).
const (
	pgProtocol30   = 3<<16 | 0
	pgMaxMessage   = 8 << 10 // a startup-phase message; error texts are far shorter
	pgMaxAfterAuth = 64      // messages read after AuthenticationOk before giving up on 'Z'
)

// errPGProtocol marks bytes that are not the startup reply of a PostgreSQL server.
var errPGProtocol = errors.New("malformed postgres reply")

// pgServerError is an ErrorResponse: Severity, SQLSTATE code and message.
type pgServerError struct {
	severity, code, message string
}

func (e *pgServerError) Error() string {
	return fmt.Sprintf("%s: %s (SQLSTATE %s)", e.severity, e.message, e.code)
}

// alive reports whether the error proves a server that accepts connections: it refused
// this login (class 28, invalid authorization: no pg_hba.conf entry, no such role) or
// this database (3D000), as HAProxy's pgsql-check counts any authentication request as
// alive. Other codes mean it takes no connections now: 57P03 (starting up, shutting
// down, in recovery without hot standby), 53300 (too many connections).
func (e *pgServerError) alive() bool {
	return strings.HasPrefix(e.code, "28") || e.code == "3D000"
}

// appendStartupMessage appends a StartupMessage with protocol 3.0 and the given
// parameter name/value pairs.
func appendStartupMessage(b []byte, params ...string) []byte {
	start := len(b)
	b = binary.BigEndian.AppendUint32(b, 0) // length, set below
	b = binary.BigEndian.AppendUint32(b, pgProtocol30)
	for _, p := range params {
		b = append(b, p...)
		b = append(b, 0)
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

// readPGMessage reads one backend message: its type byte and body.
func readPGMessage(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n < 4 || n > pgMaxMessage {
		return 0, nil, fmt.Errorf("%w: message %q of %d bytes", errPGProtocol, hdr[0], n)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return hdr[0], body, nil
}

// readStartupReply reads the server's answer to a StartupMessage. It returns authOK true
// for AuthenticationOk (the server let the role in without a password, and will send its
// parameters and ReadyForQuery next), nil for any other authentication request, and a
// *pgServerError for an ErrorResponse.
func readStartupReply(r io.Reader) (authOK bool, err error) {
	typ, body, err := readPGMessage(r)
	switch {
	case err != nil:
		return false, err
	case typ == 'R' && len(body) >= 4:
		// AuthenticationOk (0), CleartextPassword (3), MD5Password (5), SASL (10), ...
		return binary.BigEndian.Uint32(body) == 0, nil
	case typ == 'E':
		return false, parsePGError(body)
	}
	return false, fmt.Errorf("%w: message %q of %d bytes in answer to the startup message",
		errPGProtocol, typ, len(body))
}

// parsePGError reads an ErrorResponse body: fields of a type byte and a NUL-terminated
// string, ended by a zero byte.
func parsePGError(body []byte) error {
	e := &pgServerError{}
	for len(body) > 0 && body[0] != 0 {
		typ := body[0]
		i := bytes.IndexByte(body[1:], 0)
		if i < 0 {
			return fmt.Errorf("%w: unterminated error field %q", errPGProtocol, typ)
		}
		v := string(body[1 : 1+i])
		body = body[2+i:]
		switch typ {
		case 'V': // severity, never localized (9.6 and later)
			e.severity = v
		case 'S':
			if e.severity == "" {
				e.severity = v
			}
		case 'C':
			e.code = v
		case 'M':
			e.message = v
		}
	}
	if e.code == "" || e.message == "" {
		return fmt.Errorf("%w: error response without code or message", errPGProtocol)
	}
	return e
}

// drainToReady reads the messages a server sends after AuthenticationOk up to
// ReadyForQuery, so that closing the connection after a Terminate is orderly: unread
// bytes would make the close a reset, which the server logs.
func drainToReady(r io.Reader) error {
	for range pgMaxAfterAuth {
		typ, body, err := readPGMessage(r)
		switch {
		case err != nil:
			return err
		case typ == 'Z':
			return nil
		case typ == 'E':
			return parsePGError(body)
		}
	}
	return fmt.Errorf("%w: no ReadyForQuery within %d messages", errPGProtocol, pgMaxAfterAuth)
}

// pgTerminate is the Terminate message.
var pgTerminate = []byte{'X', 0, 0, 0, 4}
