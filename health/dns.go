package health

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// DNS message layout, RFC 1035 section 4.1.
const (
	dnsHeaderLen = 12
	dnsFlagQR    = 1 << 15 // a response
	dnsFlagRD    = 1 << 8  // recursion desired
	dnsClassIN   = 1
	maxNameLen   = 255 // RFC 1035 section 2.3.4, in wire form
	maxLabelLen  = 63
	// maxPointers bounds the compression pointers followed in one name:
	// a name has at most 127 labels, and a loop would follow forever.
	maxPointers = 128
)

var dnsTypes = map[string]uint16{
	"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16,
	"AAAA": 28, "SRV": 33, "DS": 43, "DNSKEY": 48, "SVCB": 64, "HTTPS": 65, "CAA": 257, "ANY": 255,
}

var rcodeNames = [...]string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"}

// ParseDNSType reads a record type name such as "A", "AAAA" or "SRV", or
// the generic form "TYPE65" (RFC 3597 section 5), for DNS.Type.
func ParseDNSType(s string) (uint16, error) {
	if t, ok := dnsTypes[strings.ToUpper(s)]; ok {
		return t, nil
	}
	if rest, ok := strings.CutPrefix(strings.ToUpper(s), "TYPE"); ok {
		if n, err := strconv.ParseUint(rest, 10, 16); err == nil && n > 0 {
			return uint16(n), nil
		}
	}
	return 0, fmt.Errorf("unknown DNS type %q: want A, AAAA, NS, SOA, MX, TXT, SRV, PTR, CNAME, CAA, ANY... or TYPEnnn", s)
}

// appendName appends name in wire form: length-prefixed labels ending with
// the root's empty label. "" and "." are the root.
func appendName(b []byte, name string) ([]byte, error) {
	name = strings.TrimSuffix(name, ".")
	start := len(b)
	if name != "" {
		for label := range strings.SplitSeq(name, ".") {
			if len(label) == 0 || len(label) > maxLabelLen {
				return nil, fmt.Errorf("DNS name %q: labels must be 1..%d bytes", name, maxLabelLen)
			}
			b = append(b, byte(len(label)))
			b = append(b, label...)
		}
	}
	b = append(b, 0)
	if len(b)-start > maxNameLen {
		return nil, fmt.Errorf("DNS name %q: longer than %d bytes", name, maxNameLen)
	}
	return b, nil
}

// dnsQuery builds a query for name and qtype, class IN, recursion desired.
func dnsQuery(id uint16, name string, qtype uint16) ([]byte, error) {
	b := make([]byte, dnsHeaderLen, dnsHeaderLen+len(name)+6)
	binary.BigEndian.PutUint16(b[0:], id)
	binary.BigEndian.PutUint16(b[2:], dnsFlagRD)
	binary.BigEndian.PutUint16(b[4:], 1) // QDCOUNT
	b, err := appendName(b, name)
	if err != nil {
		return nil, err
	}
	b = binary.BigEndian.AppendUint16(b, qtype)
	return binary.BigEndian.AppendUint16(b, dnsClassIN), nil
}

// dnsReply is what a check needs of a response.
type dnsReply struct {
	id      uint16
	rcode   int
	qname   string // lower case, dotted, "" for the root
	qtype   uint16
	qclass  uint16
	answers int // records in the answer section, all well formed
}

var errShortDNS = errors.New("truncated DNS message")

// parseDNSReply checks that msg is a well-formed response with one
// question, walking every answer record, and returns its summary. msg
// comes from the network: every length is checked before use.
func parseDNSReply(msg []byte) (dnsReply, error) {
	var r dnsReply
	if len(msg) < dnsHeaderLen {
		return r, errShortDNS
	}
	r.id = binary.BigEndian.Uint16(msg[0:])
	flags := binary.BigEndian.Uint16(msg[2:])
	if flags&dnsFlagQR == 0 {
		return r, errors.New("DNS message is a query, not a response")
	}
	r.rcode = int(flags & 0xF)
	if qd := binary.BigEndian.Uint16(msg[4:]); qd != 1 {
		return r, fmt.Errorf("DNS response has %d questions, want 1", qd)
	}
	an := int(binary.BigEndian.Uint16(msg[6:]))
	name, off, err := readName(msg, dnsHeaderLen)
	if err != nil {
		return r, err
	}
	if off+4 > len(msg) {
		return r, errShortDNS
	}
	r.qname = name
	r.qtype = binary.BigEndian.Uint16(msg[off:])
	r.qclass = binary.BigEndian.Uint16(msg[off+2:])
	off += 4
	for range an {
		if off, err = skipRecord(msg, off); err != nil {
			return r, err
		}
		r.answers++
	}
	return r, nil
}

// skipRecord returns the offset after the resource record at off.
func skipRecord(msg []byte, off int) (int, error) {
	_, off, err := readName(msg, off)
	if err != nil {
		return 0, err
	}
	// TYPE, CLASS, TTL, RDLENGTH.
	if off+10 > len(msg) {
		return 0, errShortDNS
	}
	end := off + 10 + int(binary.BigEndian.Uint16(msg[off+8:]))
	if end > len(msg) {
		return 0, errShortDNS
	}
	return end, nil
}

// readName decodes the possibly compressed name at off (RFC 1035 section
// 4.1.4) into lower-case dotted form without the final dot, and returns the
// offset after it in msg.
func readName(msg []byte, off int) (string, int, error) {
	var sb strings.Builder
	next := -1 // offset after the name where it started, once a pointer is taken
	wire := 0
	for pointers := 0; ; {
		if off >= len(msg) {
			return "", 0, errShortDNS
		}
		n := int(msg[off])
		switch n & 0xC0 {
		case 0x00:
			if n == 0 {
				if next < 0 {
					next = off + 1
				}
				return sb.String(), next, nil
			}
			if off+1+n > len(msg) {
				return "", 0, errShortDNS
			}
			if wire += 1 + n; wire+1 > maxNameLen {
				return "", 0, errors.New("DNS name too long")
			}
			if sb.Len() > 0 {
				sb.WriteByte('.')
			}
			sb.WriteString(strings.ToLower(string(msg[off+1 : off+1+n])))
			off += 1 + n
		case 0xC0:
			if off+2 > len(msg) {
				return "", 0, errShortDNS
			}
			if pointers++; pointers > maxPointers {
				return "", 0, errors.New("DNS name has a compression loop")
			}
			if next < 0 {
				next = off + 2
			}
			off = int(binary.BigEndian.Uint16(msg[off:]) & 0x3FFF)
		default:
			// 0x40 and 0x80 are the obsolete extended label types.
			return "", 0, fmt.Errorf("DNS name has label type %#x", n&0xC0)
		}
	}
}

// canonicalName is name as readName returns it: lower case, no final dot.
func canonicalName(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

func rcodeName(rc int) string {
	if rc < len(rcodeNames) {
		return rcodeNames[rc]
	}
	return "RCODE" + strconv.Itoa(rc)
}
