package health

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Limits on what a Redis server may send one probe. The replies it reads are +OK, +PONG
// and ROLE's array (on a primary: one [ip, port, offset] triple per replica), all far
// below them; a server sending more is broken or hostile and the probe fails.
const (
	respMaxReply = 64 << 10 // bytes for all the replies of one probe
	respMaxElems = 1024     // elements of one array
	respMaxDepth = 4        // nesting of arrays; ROLE nests two deep
	respMaxLine  = 4096     // one simple string, error or length line
)

// errRESP marks a reply that is not RESP2 as this reader understands it.
var errRESP = errors.New("malformed redis reply")

// respValue is one RESP2 reply (https://redis.io/docs/latest/develop/reference/protocol-spec/).
type respValue struct {
	kind  byte        // '+' simple string, '-' error, ':' integer, '$' bulk string, '*' array
	str   string      // the text of a simple string, error, integer or bulk string
	null  bool        // a null bulk string or array ($-1, *-1)
	elems []respValue // an array's elements
}

// respError is an error reply ("-WRONGPASS invalid username-password pair ..."); its text
// is the server's, code first.
type respError string

func (e respError) Error() string { return string(e) }

// err returns the reply as an error when it is an error reply, else nil.
func (v respValue) err() error {
	if v.kind == '-' {
		return respError(v.str)
	}
	return nil
}

// newRESPReader reads replies from r, at most respMaxReply bytes in all.
func newRESPReader(r io.Reader) *bufio.Reader {
	return bufio.NewReaderSize(io.LimitReader(r, respMaxReply), respMaxLine)
}

// readRESP reads one reply. It returns errRESP (wrapped) for bytes that are not RESP2, and
// the reader's error (io.EOF, a timeout) when the reply is cut short.
func readRESP(br *bufio.Reader) (respValue, error) {
	return readRESPDepth(br, 0)
}

func readRESPDepth(br *bufio.Reader, depth int) (respValue, error) {
	line, err := respLine(br)
	if err != nil {
		return respValue{}, err
	}
	v := respValue{kind: line[0], str: string(line[1:])}
	switch v.kind {
	case '+', '-':
		return v, nil
	case ':':
		if _, err := strconv.ParseInt(v.str, 10, 64); err != nil {
			return respValue{}, fmt.Errorf("%w: integer %q", errRESP, v.str)
		}
		return v, nil
	case '$':
		return readBulk(br, v.str)
	case '*':
		if depth >= respMaxDepth {
			return respValue{}, fmt.Errorf("%w: arrays nested deeper than %d", errRESP, respMaxDepth)
		}
		return readArray(br, v.str, depth)
	}
	return respValue{}, fmt.Errorf("%w: unknown type %q", errRESP, line[0])
}

// respLine reads one line without its CRLF; it is never empty.
func respLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, fmt.Errorf("%w: line longer than %d bytes", errRESP, respMaxLine)
	case errors.Is(err, io.EOF) && len(line) > 0:
		return nil, io.ErrUnexpectedEOF
	case err != nil:
		return nil, err
	case len(line) < 3 || line[len(line)-2] != '\r':
		return nil, fmt.Errorf("%w: line %q does not end in CRLF after a type", errRESP, line)
	}
	return line[:len(line)-2], nil
}

// respLength parses a bulk string's or array's length: -1 (null) up to max.
func respLength(s string, max int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < -1 || n > max {
		return 0, fmt.Errorf("%w: length %q (want -1..%d)", errRESP, s, max)
	}
	return n, nil
}

func readBulk(br *bufio.Reader, length string) (respValue, error) {
	n, err := respLength(length, respMaxReply)
	if err != nil {
		return respValue{}, err
	}
	if n < 0 {
		return respValue{kind: '$', null: true}, nil
	}
	b := make([]byte, n+2)
	if _, err := io.ReadFull(br, b); err != nil {
		return respValue{}, err
	}
	if b[n] != '\r' || b[n+1] != '\n' {
		return respValue{}, fmt.Errorf("%w: bulk string of %d bytes not followed by CRLF", errRESP, n)
	}
	return respValue{kind: '$', str: string(b[:n])}, nil
}

func readArray(br *bufio.Reader, length string, depth int) (respValue, error) {
	n, err := respLength(length, respMaxElems)
	if err != nil {
		return respValue{}, err
	}
	v := respValue{kind: '*', null: n < 0}
	for range n {
		e, err := readRESPDepth(br, depth+1)
		if err != nil {
			return respValue{}, err
		}
		v.elems = append(v.elems, e)
	}
	return v, nil
}

// appendCommand appends a command as RESP's array of bulk strings, the form every Redis
// version accepts.
func appendCommand(b []byte, args ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, '\r', '\n')
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, '\r', '\n')
		b = append(b, a...)
		b = append(b, '\r', '\n')
	}
	return b
}
