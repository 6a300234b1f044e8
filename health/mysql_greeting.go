package health

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The greeting of the MySQL client/server protocol, which MariaDB shares: "Protocol::
// HandshakeV10" in the MySQL source documentation (dev.mysql.com/doc/dev/mysql-server,
// page_protocol_connection_phase_packets_protocol_handshake_v10).
const (
	mysqlProtocol10 = 0x0a
	mysqlErrPacket  = 0xff
	// mysqlMaxGreeting caps the greeting's payload; real ones are about 100 bytes.
	mysqlMaxGreeting = 4 << 10
)

// errMySQLProtocol marks bytes that are not a MySQL server's greeting.
var errMySQLProtocol = errors.New("malformed mysql greeting")

// mysqlServerError is an ERR packet sent instead of a greeting ("Too many connections",
// "Host '10.0.0.5' is blocked because of many connection errors").
type mysqlServerError struct {
	code    uint16
	message string
}

func (e *mysqlServerError) Error() string {
	return fmt.Sprintf("error %d: %s", e.code, e.message)
}

// readGreeting reads the first packet a MySQL server sends and returns the server
// version of a protocol 10 handshake, or the *mysqlServerError of an ERR packet.
func readGreeting(r io.Reader) (version string, err error) {
	var hdr [4]byte // 3-byte little-endian payload length, sequence number
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return "", err
	}
	n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
	if n == 0 || n > mysqlMaxGreeting {
		return "", fmt.Errorf("%w: first packet of %d bytes", errMySQLProtocol, n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return "", err
	}
	switch p[0] {
	case mysqlProtocol10:
		// The version is NUL-terminated and followed by at least the connection id.
		i := bytes.IndexByte(p[1:], 0)
		if i < 0 {
			return "", fmt.Errorf("%w: unterminated server version", errMySQLProtocol)
		}
		return string(p[1 : 1+i]), nil
	case mysqlErrPacket:
		// Before capabilities are agreed the ERR packet has no SQLSTATE marker: code,
		// then the message to the end.
		if n < 3 {
			return "", fmt.Errorf("%w: short error packet", errMySQLProtocol)
		}
		return "", &mysqlServerError{binary.LittleEndian.Uint16(p[1:3]), string(p[3:])}
	}
	return "", fmt.Errorf("%w: protocol version %d, want 10", errMySQLProtocol, p[0])
}
