// Package discover takes a pool's backends from DNS: the SRV records of a
// service (their targets' addresses, ports and weights) or the A and AAAA
// records of a host name at a fixed port. A Watcher re-resolves them on an
// interval and on the records' TTL and hands every changed set to its
// pool, keeping the last good set while the resolver fails.
//
//	w := &discover.Watcher{Name: "db", Source: discover.Source{SRV: "_pg._tcp.db.internal"}, Apply: apply}
//	first, err := w.Resolve(ctx) // build the pool with first, even if empty
//	go w.Run(ctx)                // apply(backends) on every change until ctx ends
package discover

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"sluice/internal/pool"
)

// DefaultTimeout bounds each DNS exchange when Source.Timeout is zero.
const DefaultTimeout = 2 * time.Second

// ErrNoRecords is returned (wrapped) by Resolve when the name exists but
// has no usable records, or does not exist (NXDOMAIN). A Watcher treats it
// as a failure and keeps the last good set: a DNS change that empties a
// pool is far more often a mistake than an intent.
var ErrNoRecords = errors.New("discover: no records")

// Source names the DNS records a pool's backends come from. Names are
// absolute: no search domains are tried.
type Source struct {
	// SRV is a service's SRV name, such as _postgresql._tcp.db.internal.
	// Each record's target addresses (A and AAAA), port and weight make
	// backends; the records of the lowest priority are the pool's
	// backends and those of higher priorities its backups (RFC 2782 asks
	// clients to try the lowest priority first).
	SRV string
	// Host is a name whose A and AAAA records are the backends'
	// addresses, each at Port with weight 1. Used when SRV is empty.
	Host string
	// Port is the backends' port with Host.
	Port uint16
	// Resolver is the DNS server asked, over UDP and, for a truncated
	// answer, TCP. The zero value means the first nameserver of
	// /etc/resolv.conf, or 127.0.0.1:53 if there is none.
	Resolver netip.AddrPort
	// Timeout bounds each exchange with the resolver. Zero means
	// DefaultTimeout.
	Timeout time.Duration
}

func (s Source) timeout() time.Duration {
	if s.Timeout <= 0 {
		return DefaultTimeout
	}
	return s.Timeout
}

// String names the source in logs: "srv _pg._tcp.db" or "host db:5432".
func (s Source) String() string {
	if s.SRV != "" {
		return "srv " + s.SRV
	}
	return fmt.Sprintf("host %s:%d", s.Host, s.Port)
}

// Result is one resolution of a Source.
type Result struct {
	// Backends are the backends the records describe, sorted by address,
	// without duplicates.
	Backends []pool.BackendOptions
	// TTL is the least TTL of the records used: how long the set may be
	// trusted.
	TTL time.Duration
}

// target is one address a source's records lead to.
type target struct {
	addr     netip.AddrPort
	weight   uint16
	priority uint16
}

// Resolve looks the source up once.
func (s Source) Resolve(ctx context.Context) (Result, error) {
	server := s.Resolver
	if !server.IsValid() {
		server = systemResolver()
	}
	r := &resolver{server: server, timeout: s.timeout(), ttl: -1}
	var ts []target
	var err error
	if s.SRV != "" {
		ts, err = r.srv(ctx, s.SRV)
	} else {
		ts, err = r.host(ctx, s.Host, s.Port)
	}
	if err != nil {
		return Result{}, fmt.Errorf("resolving %s at %s: %w", s, server, err)
	}
	if len(ts) == 0 {
		return Result{}, fmt.Errorf("resolving %s at %s: %w", s, server, ErrNoRecords)
	}
	return Result{Backends: backends(ts), TTL: max(r.ttl, 0)}, nil
}

// resolver runs the queries of one resolution and keeps their least TTL.
type resolver struct {
	server  netip.AddrPort
	timeout time.Duration
	ttl     time.Duration // -1 until a record is seen
}

func (r *resolver) seen(ttl uint32) {
	d := time.Duration(ttl) * time.Second
	if r.ttl < 0 || d < r.ttl {
		r.ttl = d
	}
}

// host returns the A and AAAA addresses of name, at port.
func (r *resolver) host(ctx context.Context, name string, port uint16) ([]target, error) {
	addrs, err := r.addrs(ctx, name, nil)
	if err != nil {
		return nil, err
	}
	ts := make([]target, len(addrs))
	for i, a := range addrs {
		ts[i] = target{addr: netip.AddrPortFrom(a, port), weight: 1}
	}
	return ts, nil
}

// srv returns the targets of name's SRV records, with the addresses the
// answer's additional section gives for them, or else looked up.
func (r *resolver) srv(ctx context.Context, name string) ([]target, error) {
	res, err := r.query(ctx, name, dnsmessage.TypeSRV)
	if err != nil {
		return nil, err
	}
	var ts []target
	for _, rr := range res.answers(name, dnsmessage.TypeSRV) {
		srv := rr.Body.(*dnsmessage.SRVResource)
		if srv.Target.String() == "." {
			// RFC 2782: "." means the service is decidedly not
			// available at this domain.
			continue
		}
		r.seen(rr.Header.TTL)
		addrs, err := r.addrs(ctx, srv.Target.String(), res)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", srv.Target, err)
		}
		for _, a := range addrs {
			ts = append(ts, target{addr: netip.AddrPortFrom(a, srv.Port), weight: srv.Weight, priority: srv.Priority})
		}
	}
	return ts, nil
}

// addrs returns name's A and AAAA addresses: those in the additional
// section of an SRV answer, if it has any for name, else from queries.
func (r *resolver) addrs(ctx context.Context, name string, extra *response) ([]netip.Addr, error) {
	if extra != nil {
		if as := r.collect(extra.additional(name)); len(as) > 0 {
			return as, nil
		}
	}
	var out []netip.Addr
	for _, qt := range []dnsmessage.Type{dnsmessage.TypeA, dnsmessage.TypeAAAA} {
		res, err := r.query(ctx, name, qt)
		if err != nil {
			return nil, err
		}
		out = append(out, r.collect(res.answers(name, qt))...)
	}
	return out, nil
}

// collect returns the addresses of A and AAAA records, noting their TTLs.
func (r *resolver) collect(rrs []dnsmessage.Resource) []netip.Addr {
	var out []netip.Addr
	for _, rr := range rrs {
		switch b := rr.Body.(type) {
		case *dnsmessage.AResource:
			out = append(out, netip.AddrFrom4(b.A))
		case *dnsmessage.AAAAResource:
			out = append(out, netip.AddrFrom16(b.AAAA))
		default:
			continue
		}
		r.seen(rr.Header.TTL)
	}
	return out
}

// backends turns targets into pool backends: SRV weights (0 to 65535)
// scaled into 1..pool.MaxWeight if any exceeds it, a weight of 0 counted
// as 1 (RFC 2782 gives such records a small chance, not none), the lowest
// priority as backends and the others as backups. Targets sharing an
// address are one backend, with their weights added up.
func backends(ts []target) []pool.BackendOptions {
	var top uint16
	best := ts[0].priority
	for _, t := range ts {
		top, best = max(top, t.weight), min(best, t.priority)
	}
	weight := func(w uint16) int {
		if top > pool.MaxWeight {
			w = uint16((int(w)*pool.MaxWeight + int(top)/2) / int(top))
		}
		return max(int(w), 1)
	}
	slices.SortFunc(ts, func(a, b target) int { return a.addr.Compare(b.addr) })
	var out []pool.BackendOptions
	for _, t := range ts {
		backup := t.priority != best
		if n := len(out); n > 0 && out[n-1].Addr == t.addr {
			out[n-1].Weight = min(out[n-1].Weight+weight(t.weight), pool.MaxWeight)
			out[n-1].Backup = out[n-1].Backup && backup
			continue
		}
		out = append(out, pool.BackendOptions{Addr: t.addr, Weight: weight(t.weight), Backup: backup})
	}
	return out
}

// equal reports whether two sorted sets of backends are the same.
func equal(a, b []pool.BackendOptions) bool {
	return slices.EqualFunc(a, b, func(x, y pool.BackendOptions) bool {
		return x.Addr == y.Addr && x.Weight == y.Weight && x.Backup == y.Backup && x.Admin == y.Admin
	})
}

// canonical returns name in the form responses are compared in: lower
// case, with the root's trailing dot.
func canonical(name string) string {
	name = strings.ToLower(name)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}
