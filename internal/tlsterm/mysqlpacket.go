package tlsterm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MySQL's client/server protocol, as much of it as TLS offload reads: the
// packet framing, the server's greeting (Protocol::HandshakeV10) and the
// client's first packet (an SSLRequest or a HandshakeResponse41). See
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase.html
// and MariaDB's "Connection" page, which agree on all of it.
const (
	// myHeader is a packet's header: a 3-byte little-endian payload
	// length and a sequence id, which counts the packets of one
	// exchange (the connection phase is one exchange).
	myHeader = 4
	// myMaxPacket bounds a connection-phase packet's payload. A
	// greeting is about 100 bytes; a HandshakeResponse carries names
	// and connection attributes (64 KiB at most on the server side);
	// auth exchanges carry at most an RSA public key or a Kerberos
	// token. A payload of 0xffffff would continue in the next packet,
	// which no connection-phase packet needs.
	myMaxPacket = 1 << 20
	// myProtocol10 is the only greeting version since MySQL 3.21.
	myProtocol10 = 10
	// Capability flags (CLIENT_*).
	myClientProtocol41 = 0x0200
	myClientSSL        = 0x0800
	// mySSLRequestLen is an SSLRequest's payload: the first 32 bytes of a
	// HandshakeResponse41 (capabilities, max packet size, character set,
	// 23 reserved bytes, of which MariaDB uses the last 4 for its own
	// capabilities).
	mySSLRequestLen = 32
	// First bytes of the server's packets after the client's response.
	myOK  = 0x00
	myERR = 0xff
)

// errMySQLPacket is wrapped by every error about a malformed packet.
var errMySQLPacket = errors.New("tlsterm: malformed MySQL packet")

// readMySQLPacket reads one packet, header included, of at most
// myMaxPacket payload bytes. It reads exactly that packet: nothing that
// follows (a TLS ClientHello after an SSLRequest) is consumed.
func readMySQLPacket(r io.Reader) ([]byte, error) {
	var h [myHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n, err := myPayloadLen(h)
	if err != nil {
		return nil, err
	}
	p := make([]byte, myHeader+n)
	copy(p, h[:])
	if _, err := io.ReadFull(r, p[myHeader:]); err != nil {
		return nil, fmt.Errorf("reading a packet of %d bytes: %w", n, err)
	}
	return p, nil
}

// myPayloadLen is the payload length a header announces, if within
// bounds.
func myPayloadLen(h [myHeader]byte) (int, error) {
	n := int(h[0]) | int(h[1])<<8 | int(h[2])<<16
	if n > myMaxPacket {
		return 0, fmt.Errorf("%w: %d bytes, more than the connection phase allows", errMySQLPacket, n)
	}
	return n, nil
}

// greetingCaps returns the offset, in a greeting's payload, of the lower
// two bytes of the server's capability flags (where CLIENT_SSL is). An
// ERR packet in its place (too many connections, a blocked host) is
// returned as an error with its code and message.
func greetingCaps(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, fmt.Errorf("%w: empty greeting", errMySQLPacket)
	}
	if p[0] == myERR {
		return 0, fmt.Errorf("server refused: %s", myErrText(p))
	}
	if p[0] != myProtocol10 {
		return 0, fmt.Errorf("%w: greeting of protocol version %d, want 10", errMySQLPacket, p[0])
	}
	// Server version (NUL-terminated), connection id (4), the first 8
	// bytes of the scramble, a filler byte, then the flags.
	nul := -1
	for i, b := range p[1:] {
		if b == 0 {
			nul = 1 + i
			break
		}
	}
	if nul < 0 {
		return 0, fmt.Errorf("%w: greeting without the end of its server version", errMySQLPacket)
	}
	at := nul + 1 + 4 + 8 + 1
	if at+2 > len(p) {
		return 0, fmt.Errorf("%w: greeting of %d bytes ends before its capability flags", errMySQLPacket, len(p))
	}
	return at, nil
}

// myErrText is an ERR packet's payload as "code (sqlstate): message".
func myErrText(p []byte) string {
	if len(p) < 3 {
		return "an ERR packet without a code"
	}
	code, msg := binary.LittleEndian.Uint16(p[1:3]), p[3:]
	state := ""
	if len(msg) >= 6 && msg[0] == '#' {
		state, msg = string(msg[1:6]), msg[6:]
	}
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return fmt.Sprintf("error %d (%s): %q", code, state, msg)
}

// The client's first packet.
const (
	myBadFirst    = iota
	mySSLRequest  // asks for TLS: the handshake follows
	myResponse    // a HandshakeResponse41 in plain
	myOldResponse // a HandshakeResponse320 (protocol 4.0), which has no room for TLS
)

// clientFirst says what a client's first packet (payload) is, and returns
// its capability flags.
func clientFirst(p []byte) (uint32, int) {
	if len(p) < 2 {
		return 0, myBadFirst
	}
	if binary.LittleEndian.Uint16(p)&myClientProtocol41 == 0 {
		return uint32(binary.LittleEndian.Uint16(p)), myOldResponse
	}
	if len(p) < mySSLRequestLen {
		return 0, myBadFirst
	}
	caps := binary.LittleEndian.Uint32(p)
	switch {
	case len(p) == mySSLRequestLen && caps&myClientSSL != 0:
		return caps, mySSLRequest
	case len(p) > mySSLRequestLen && caps&myClientSSL == 0:
		// A response has at least a user name's NUL after the 32 bytes.
		return caps, myResponse
	}
	return caps, myBadFirst
}

// withCaps returns a copy of the HandshakeResponse41 packet p with sequence
// id seq and CLIENT_SSL set or cleared: what the server must see on a
// connection whose TLS (or its absence) differs from the client's.
func withCaps(p []byte, seq byte, ssl bool) []byte {
	out := append([]byte(nil), p...)
	out[3] = seq
	caps := binary.LittleEndian.Uint32(out[myHeader:])
	if ssl {
		caps |= myClientSSL
	} else {
		caps &^= myClientSSL
	}
	binary.LittleEndian.PutUint32(out[myHeader:], caps)
	return out
}

// sslRequestFor is the SSLRequest packet (sequence id 1) for the
// HandshakeResponse41 packet p: its first 32 bytes, with CLIENT_SSL set.
func sslRequestFor(p []byte) []byte {
	out := withCaps(p[:myHeader+mySSLRequestLen], 1, true)
	out[0], out[1], out[2] = mySSLRequestLen, 0, 0
	return out
}

// myErrPacket builds an ERR packet with sequence id seq.
func myErrPacket(seq byte, code uint16, state, msg string) []byte {
	p := []byte{0, 0, 0, seq, myERR}
	p = binary.LittleEndian.AppendUint16(p, code)
	p = append(p, '#')
	p = append(p, state...)
	p = append(p, msg...)
	n := len(p) - myHeader
	p[0], p[1], p[2] = byte(n), byte(n>>8), byte(n>>16)
	return p
}
