package health

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"regexp"
)

// DNS checks a DNS server over UDP: it sends one query and wants a NOERROR
// response to it (same ID and question). An empty answer (NODATA) passes:
// the server works.
type DNS struct {
	// Name is the name asked for; empty means the root, which a recursive
	// resolver answers. Ask an authoritative server for a name in its zone.
	Name string
	// Type is the record type asked for (see ParseDNSType); zero means A.
	Type uint16
}

var _ Prober = DNS{}

// Probe sends the query and waits for its response until ctx ends.
// Responses with another ID or question are ignored, as a resolver would
// (RFC 5452 section 9.1): they may be late answers to earlier checks.
func (d DNS) Probe(ctx context.Context, addr netip.AddrPort) error {
	qtype := d.Type
	if qtype == 0 {
		qtype = dnsTypes["A"]
	}
	id := uint16(rand.Uint32())
	query, err := dnsQuery(id, d.Name, qtype)
	if err != nil {
		return err
	}
	c, err := dial(ctx, "udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(query); err != nil {
		return shortError("send", err)
	}
	want := canonicalName(d.Name)
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return shortError("read", err)
		}
		r, err := parseDNSReply(buf[:n])
		if err != nil || r.id != id || r.qname != want || r.qtype != qtype || r.qclass != dnsClassIN {
			continue
		}
		if r.rcode != 0 {
			return fmt.Errorf("DNS answer %s", rcodeName(r.rcode))
		}
		return nil
	}
}

// UDPSendExpect sends Send in one datagram and waits for a reply that
// contains Expect and matches Regexp; with neither, any reply passes.
// A port with nothing listening usually fails at once: the kernel reports
// the ICMP port unreachable as "connection refused".
type UDPSendExpect struct {
	// Send is the datagram sent; it may be empty.
	Send []byte
	// Expect is a substring the reply must contain; empty means none.
	Expect string
	// Regexp must match the reply; nil means none.
	Regexp *regexp.Regexp
}

var _ Prober = UDPSendExpect{}

// Probe sends the datagram and reads replies until one matches or ctx ends.
func (u UDPSendExpect) Probe(ctx context.Context, addr netip.AddrPort) error {
	c, err := dial(ctx, "udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(u.Send); err != nil {
		return shortError("send", err)
	}
	buf := make([]byte, maxResponse)
	var last []byte
	for {
		n, err := c.Read(buf)
		if err != nil {
			if last != nil {
				return fmt.Errorf("unexpected reply %s", quoteStart(last))
			}
			return shortError("read", err)
		}
		if matches(buf[:n], u.Expect, u.Regexp) {
			return nil
		}
		last = append(last[:0], buf[:n]...)
	}
}
