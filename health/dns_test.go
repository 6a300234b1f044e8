package health

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

func TestParseDNSType(t *testing.T) {
	tests := []struct {
		in   string
		want uint16
		err  bool
	}{
		{"A", 1, false}, {"aaaa", 28, false}, {"SRV", 33, false}, {"TYPE65", 65, false},
		{"type300", 300, false}, {"TYPE0", 0, true}, {"TYPE70000", 0, true}, {"AXFR", 0, true}, {"", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseDNSType(tt.in)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("ParseDNSType(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestDNSQuery(t *testing.T) {
	q, err := dnsQuery(0xBEEF, "www.Example.com.", 28)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0xBE, 0xEF, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0,
		3, 'w', 'w', 'w', 7, 'E', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 28, 0, 1}
	if !bytes.Equal(q, want) {
		t.Errorf("query\n%v, want\n%v", q, want)
	}
	root, _ := dnsQuery(1, ".", 1)
	if !bytes.Equal(root[12:], []byte{0, 0, 1, 0, 1}) {
		t.Errorf("root query question %v", root[12:])
	}
	for _, bad := range []string{"a..b", strings.Repeat("x", 64) + ".com", strings.Repeat("abcdefghi.", 26)} {
		if _, err := dnsQuery(1, bad, 1); err == nil {
			t.Errorf("dnsQuery(%q) succeeded", bad)
		}
	}
}

// reply builds a response to a query for name with the given answers
// appended raw.
func reply(t testing.TB, name string, rcode int, answers int, records []byte) []byte {
	q, err := dnsQuery(7, name, 1)
	if err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint16(q[2:], dnsFlagQR|uint16(rcode))
	binary.BigEndian.PutUint16(q[6:], uint16(answers))
	return append(q, records...)
}

func TestParseDNSReply(t *testing.T) {
	aRecord := []byte{0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1}
	// A CNAME whose target is "alias" plus a pointer to the question.
	cname := []byte{0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 8, 5, 'a', 'l', 'i', 'a', 's', 0xC0, 12}
	// An A record owned by the CNAME's target: a pointer to a pointer.
	chained := []byte{0xC0, 12 + 17 + 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 2}
	tests := []struct {
		name    string
		msg     []byte
		answers int
		qname   string
		rcode   int
		err     string
	}{
		{"one answer", reply(t, "Example.com", 0, 1, aRecord), 1, "example.com", 0, ""},
		{"nodata", reply(t, "example.com", 0, 0, nil), 0, "example.com", 0, ""},
		{"nxdomain", reply(t, "example.com", 3, 0, nil), 0, "example.com", 3, ""},
		{"root", reply(t, "", 0, 0, nil), 0, "", 0, ""},
		{"pointer chains", reply(t, "example.com", 0, 3, append(append(append([]byte{}, cname...), chained...), aRecord...)), 3, "example.com", 0, ""},
		{"short header", []byte{0, 1, 0x80}, 0, "", 0, "truncated"},
		{"a query", func() []byte { q, _ := dnsQuery(7, "x", 1); return q }(), 0, "", 0, "is a query"},
		{"answer missing", reply(t, "example.com", 0, 2, aRecord), 0, "", 0, "truncated"},
		{"rdata past the end", reply(t, "example.com", 0, 1, aRecord[:14]), 0, "", 0, "truncated"},
		{"pointer loop", reply(t, "example.com", 0, 1, []byte{0xC0, 29, 0, 1}), 0, "", 0, "compression loop"},
		{"pointer past the end", reply(t, "example.com", 0, 1, []byte{0xC0, 200}), 0, "", 0, "truncated"},
		{"extended label", reply(t, "example.com", 0, 1, []byte{0x41, 0}), 0, "", 0, "label type"},
		{"two questions", func() []byte { m := reply(t, "x", 0, 0, nil); m[5] = 2; return m }(), 0, "", 0, "2 questions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := parseDNSReply(tt.msg)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.id != 7 || r.answers != tt.answers || r.qname != tt.qname || r.rcode != tt.rcode || r.qtype != 1 || r.qclass != 1 {
				t.Errorf("got %+v, want %d answers for %q, rcode %d", r, tt.answers, tt.qname, tt.rcode)
			}
		})
	}
}

// FuzzParseDNSReply feeds the response parser arbitrary bytes: it must
// never panic or loop, must stay within the message, and must read back
// any name that a query it built carries.
func FuzzParseDNSReply(f *testing.F) {
	aRecord := []byte{0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1}
	f.Add(reply(f, "example.com", 0, 1, aRecord))
	f.Add(reply(f, "", 3, 0, nil))
	f.Add(reply(f, "a.b.c", 0, 1, []byte{0xC0, 29, 0, 1}))
	f.Add([]byte{0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12})
	f.Fuzz(func(t *testing.T, msg []byte) {
		r, err := parseDNSReply(msg)
		if err != nil {
			return
		}
		if len(r.qname) > maxNameLen || r.answers > 0xFFFF {
			t.Fatalf("implausible reply %+v", r)
		}
		// Whatever name was read, a query built for it reads back the
		// same (if it is a valid name to send).
		q, err := dnsQuery(1, r.qname, r.qtype)
		if err != nil {
			return
		}
		binary.BigEndian.PutUint16(q[2:], dnsFlagQR)
		back, err := parseDNSReply(q)
		if err != nil || back.qname != canonicalName(r.qname) {
			t.Fatalf("name %q reads back as %q, %v", r.qname, back.qname, err)
		}
	})
}
