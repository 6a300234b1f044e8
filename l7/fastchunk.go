package l7

import "errors"

// errBadChunk is chunked framing the fast path refuses: a size that is no
// hex number or too long, a missing CRLF after a size line or chunk data,
// control bytes in an extension or a trailer. Its text is the error logged.
var errBadChunk = errors.New("l7: malformed chunked encoding")

// chunkScanner follows chunked framing (RFC 9112 section 7.1) across
// reads, without copying: the fast path forwards the raw bytes as they
// come and needs only to know where the message ends and how many data
// bytes it carried. The zero value expects a chunk size.
type chunkScanner struct {
	state  uint8
	digits uint8
	size   uint64 // the chunk's size while reading it; then what is left of it
	data   int64  // data bytes so far
}

const (
	chunkSize        = iota // hex digits
	chunkSizeWS             // whitespace after the size, before ';' or CR
	chunkExt                // an extension, up to CR
	chunkSizeLF             // LF after the size line's CR
	chunkData               // size bytes
	chunkDataCR             // CR after the data
	chunkDataLF             // LF after it
	chunkTrailer            // start of a trailer line, or the final CRLF
	chunkTrailerLine        // within a trailer line
	chunkTrailerLF          // LF of a trailer line
	chunkEndLF              // LF of the final CRLF
	chunkDone
)

// maxChunkDigits bounds a chunk size: 15 hex digits fit an int64.
const maxChunkDigits = 15

// scan consumes p up to the end of the message. It returns how many bytes
// of p belong to the message and whether the message ended there.
func (c *chunkScanner) scan(p []byte) (n int, done bool, err error) {
	for n < len(p) {
		if c.state == chunkData {
			k := min(uint64(len(p)-n), c.size)
			n += int(k)
			c.size -= k
			c.data += int64(k)
			if c.size == 0 {
				c.state = chunkDataCR
			}
			continue
		}
		b := p[n]
		n++
		switch c.state {
		case chunkSize:
			d, ok := hexDigit(b)
			switch {
			case ok && c.digits < maxChunkDigits:
				c.size = c.size<<4 | uint64(d)
				c.digits++
			case ok:
				return n, false, errBadChunk
			case c.digits == 0:
				return n, false, errBadChunk
			case b == '\r':
				c.state = chunkSizeLF
			case b == ';':
				c.state = chunkExt
			case b == ' ' || b == '\t':
				c.state = chunkSizeWS
			default:
				return n, false, errBadChunk
			}
		case chunkSizeWS:
			switch b {
			case ' ', '\t':
			case ';':
				c.state = chunkExt
			case '\r':
				c.state = chunkSizeLF
			default:
				return n, false, errBadChunk
			}
		case chunkExt:
			if b == '\r' {
				c.state = chunkSizeLF
			} else if b < ' ' && b != '\t' || b == 0x7f {
				return n, false, errBadChunk
			}
		case chunkSizeLF:
			if b != '\n' {
				return n, false, errBadChunk
			}
			c.digits = 0
			if c.size == 0 {
				c.state = chunkTrailer
			} else {
				c.state = chunkData
			}
		case chunkDataCR:
			if b != '\r' {
				return n, false, errBadChunk
			}
			c.state = chunkDataLF
		case chunkDataLF:
			if b != '\n' {
				return n, false, errBadChunk
			}
			c.state = chunkSize
		case chunkTrailer:
			switch {
			case b == '\r':
				c.state = chunkEndLF
			case tokenChars[b]:
				c.state, c.digits = chunkTrailerLine, 0 // digits: 1 once the colon is seen
			default:
				return n, false, errBadChunk
			}
		case chunkTrailerLine:
			if b == ':' {
				c.digits = 1
			}
			if b == '\r' && c.digits == 1 {
				c.state = chunkTrailerLF
			} else if b == '\r' || b < ' ' && b != '\t' || b == 0x7f {
				return n, false, errBadChunk
			}
		case chunkTrailerLF:
			if b != '\n' {
				return n, false, errBadChunk
			}
			c.state = chunkTrailer
		case chunkEndLF:
			if b != '\n' {
				return n, false, errBadChunk
			}
			c.state = chunkDone
			return n, true, nil
		}
	}
	return n, c.state == chunkDone, nil
}

func hexDigit(b byte) (byte, bool) {
	switch {
	case '0' <= b && b <= '9':
		return b - '0', true
	case 'a' <= b && b <= 'f':
		return b - 'a' + 10, true
	case 'A' <= b && b <= 'F':
		return b - 'A' + 10, true
	}
	return 0, false
}
