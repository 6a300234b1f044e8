package discover

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
)

// maxCNAMEs bounds the CNAME chain followed inside one answer.
const maxCNAMEs = 8

// response is what Resolve uses of one answer.
type response struct {
	answer []dnsmessage.Resource
	extra  []dnsmessage.Resource // the additional section
}

// answers returns the records of type qt for name in the answer section,
// following the CNAMEs it holds.
func (r *response) answers(name string, qt dnsmessage.Type) []dnsmessage.Resource {
	names := map[string]bool{canonical(name): true}
	for range maxCNAMEs {
		grew := false
		for _, rr := range r.answer {
			c, ok := rr.Body.(*dnsmessage.CNAMEResource)
			if ok && names[canonical(rr.Header.Name.String())] && !names[canonical(c.CNAME.String())] {
				names[canonical(c.CNAME.String())], grew = true, true
			}
		}
		if !grew {
			break
		}
	}
	var out []dnsmessage.Resource
	for _, rr := range r.answer {
		if rr.Header.Type == qt && rr.Header.Class == dnsmessage.ClassINET && names[canonical(rr.Header.Name.String())] {
			out = append(out, rr)
		}
	}
	return out
}

// additional returns the A and AAAA records for name in the additional
// section, where resolvers put the addresses of SRV targets they know.
func (r *response) additional(name string) []dnsmessage.Resource {
	var out []dnsmessage.Resource
	for _, rr := range r.extra {
		t := rr.Header.Type
		if (t == dnsmessage.TypeA || t == dnsmessage.TypeAAAA) && canonical(rr.Header.Name.String()) == canonical(name) {
			out = append(out, rr)
		}
	}
	return out
}

// query asks the resolver for name's records of type qt, over UDP, and
// again over TCP if the answer was truncated (RFC 7766).
func (r *resolver) query(ctx context.Context, name string, qt dnsmessage.Type) (*response, error) {
	n, err := dnsmessage.NewName(canonical(name))
	if err != nil {
		return nil, fmt.Errorf("name %q: %w", name, err)
	}
	q := dnsmessage.Question{Name: n, Type: qt, Class: dnsmessage.ClassINET}
	id := uint16(rand.Uint32())
	msg := dnsmessage.Message{Header: dnsmessage.Header{ID: id, RecursionDesired: true}, Questions: []dnsmessage.Question{q}}
	packed, err := msg.Pack()
	if err != nil {
		return nil, fmt.Errorf("packing query for %s: %w", name, err)
	}
	raw, err := r.exchange(ctx, "udp", packed, id)
	if err != nil {
		return nil, err
	}
	res, truncated, err := parse(raw, id, q)
	if err != nil || !truncated {
		return res, err
	}
	if raw, err = r.exchange(ctx, "tcp", packed, id); err != nil {
		return nil, err
	}
	res, _, err = parse(raw, id, q)
	return res, err
}

// parse reads the answer raw to the query q with id: the records, or
// truncated, or why the answer is unusable. An answer that the name does
// not exist (NXDOMAIN) has no records, like one with none of the type.
func parse(raw []byte, id uint16, q dnsmessage.Question) (res *response, truncated bool, err error) {
	var m dnsmessage.Message
	if err := m.Unpack(raw); err != nil {
		return nil, false, fmt.Errorf("malformed answer for %s %s: %w", q.Name, q.Type, err)
	}
	switch {
	case !m.Response || m.ID != id:
		return nil, false, fmt.Errorf("answer for %s %s is not a response to the query", q.Name, q.Type)
	case len(m.Questions) != 1 || m.Questions[0].Type != q.Type || m.Questions[0].Class != q.Class ||
		!strings.EqualFold(m.Questions[0].Name.String(), q.Name.String()):
		return nil, false, fmt.Errorf("answer for %s %s is for another question", q.Name, q.Type)
	case m.Truncated:
		return nil, true, nil
	case m.RCode == dnsmessage.RCodeNameError:
		return &response{}, false, nil
	case m.RCode != dnsmessage.RCodeSuccess:
		return nil, false, fmt.Errorf("%s %s: %s", q.Name, q.Type, rcodeName(m.RCode))
	}
	return &response{answer: m.Answers, extra: m.Additionals}, false, nil
}

// rcodeName names an error code as dig prints it.
func rcodeName(c dnsmessage.RCode) string {
	switch c {
	case dnsmessage.RCodeFormatError:
		return "FORMERR"
	case dnsmessage.RCodeServerFailure:
		return "SERVFAIL"
	case dnsmessage.RCodeNotImplemented:
		return "NOTIMP"
	case dnsmessage.RCodeRefused:
		return "REFUSED"
	}
	return fmt.Sprintf("RCODE%d", c)
}

// maxUDPAnswer is the largest UDP answer read. Without EDNS a resolver
// sends at most 512 bytes; a larger buffer costs nothing here.
const maxUDPAnswer = 4096

// exchange sends msg to the resolver over network and returns the answer
// with id, within the timeout and until ctx ends.
func (r *resolver) exchange(ctx context.Context, network string, msg []byte, id uint16) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, network, r.server.String())
	if err != nil {
		return nil, fmt.Errorf("dialing resolver: %w", err)
	}
	defer c.Close()
	// Cut the exchange short when ctx ends, as on shutdown.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	var raw []byte
	if network == "tcp" {
		raw, err = exchangeTCP(c, msg)
	} else {
		raw, err = exchangeUDP(c, msg, id)
	}
	if err != nil {
		if ctx.Err() != nil {
			err = errors.Join(ctx.Err(), err)
		}
		return nil, fmt.Errorf("asking %s over %s: %w", r.server, network, err)
	}
	return raw, nil
}

// exchangeUDP sends msg and reads datagrams until one carries id: a late
// answer to an earlier query on a reused port is skipped.
func exchangeUDP(c net.Conn, msg []byte, id uint16) ([]byte, error) {
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	buf := make([]byte, maxUDPAnswer)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		if n >= 2 && binary.BigEndian.Uint16(buf) == id {
			return buf[:n], nil
		}
	}
}

// exchangeTCP sends msg and reads one answer, each with its two-byte
// length prefix (RFC 1035 section 4.2.2).
func exchangeTCP(c net.Conn, msg []byte) ([]byte, error) {
	if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(msg))), msg...)); err != nil {
		return nil, err
	}
	var n [2]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return nil, err
	}
	raw := make([]byte, binary.BigEndian.Uint16(n[:]))
	if _, err := io.ReadFull(c, raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// systemResolver returns the first nameserver of /etc/resolv.conf, or
// 127.0.0.1:53.
func systemResolver() netip.AddrPort {
	fallback := netip.MustParseAddrPort("127.0.0.1:53")
	f, err := os.Open("/etc/resolv.conf")
	if err != nil {
		return fallback
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		if a, err := netip.ParseAddr(fields[1]); err == nil {
			return netip.AddrPortFrom(a, 53)
		}
	}
	return fallback
}
