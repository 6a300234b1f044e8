package discover

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"sluice/internal/pool"
)

// show prints backends as "addr/weight" with a "b" for backups.
func show(bs []pool.BackendOptions) string {
	var parts []string
	for _, b := range bs {
		s := fmt.Sprintf("%s/%d", b.Addr, b.Weight)
		if b.Backup {
			s += "b"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func TestBackends(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		name string
		ts   []target
		want string
	}{
		{"weights kept", []target{{ap("10.0.0.2:5432"), 20, 0}, {ap("10.0.0.1:5432"), 10, 0}},
			"10.0.0.1:5432/10 10.0.0.2:5432/20"},
		{"zero weight is one", []target{{ap("10.0.0.1:1"), 0, 0}, {ap("10.0.0.2:1"), 5, 0}},
			"10.0.0.1:1/1 10.0.0.2:1/5"},
		{"large weights scaled", []target{{ap("10.0.0.1:1"), 65535, 0}, {ap("10.0.0.2:1"), 32768, 0}, {ap("10.0.0.3:1"), 1, 0}},
			"10.0.0.1:1/256 10.0.0.2:1/128 10.0.0.3:1/1"},
		{"higher priorities are backups", []target{{ap("10.0.0.1:1"), 1, 20}, {ap("10.0.0.2:1"), 1, 10}, {ap("10.0.0.3:1"), 1, 30}},
			"10.0.0.1:1/1b 10.0.0.2:1/1 10.0.0.3:1/1b"},
		{"one address twice", []target{{ap("10.0.0.1:1"), 200, 10}, {ap("10.0.0.1:1"), 100, 0}, {ap("10.0.0.1:2"), 1, 0}},
			"10.0.0.1:1/256 10.0.0.1:2/1"},
		{"ports differ", []target{{ap("[::1]:2"), 1, 0}, {ap("[::1]:1"), 1, 0}},
			"[::1]:1/1 [::1]:2/1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := show(backends(tt.ts)); got != tt.want {
				t.Errorf("backends = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestResolve resolves sources against a fake server in each of the ways
// a resolver may answer.
func TestResolve(t *testing.T) {
	const svc = "_pg._tcp.db.test"
	tests := []struct {
		name    string
		zone    func(f *fakeDNS)
		src     Source
		want    string
		ttl     time.Duration
		err     error  // errors.Is
		errText string // or a substring
		timeout bool   // or a timeout: the connection's deadline or the context's, whichever fired first
		queries string // the queries made, if set
	}{
		{
			name: "srv with additional addresses",
			zone: func(f *fakeDNS) {
				f.set(svc, srv(svc, "a.db.test", 5432, 10, 0, 60), srv(svc, "b.db.test", 5433, 30, 0, 30))
				f.setExtra(svc, dnsmessage.TypeSRV, a("a.db.test", "10.0.0.1", 20), a("b.db.test", "10.0.0.2", 60),
					a("b.db.test", "fd00::2", 60))
			},
			src:     Source{SRV: svc},
			want:    "10.0.0.1:5432/10 10.0.0.2:5433/30 [fd00::2]:5433/30",
			ttl:     20 * time.Second,
			queries: "udp TypeSRV _pg._tcp.db.test.",
		},
		{
			name: "srv targets looked up",
			zone: func(f *fakeDNS) {
				f.set(svc, srv(svc, "a.db.test", 5432, 1, 0, 60), srv(svc, "b.db.test", 5432, 1, 1, 60))
				f.set("a.db.test", a("a.db.test", "10.0.0.1", 5))
				f.set("b.db.test", a("b.db.test", "10.0.0.2", 60))
				f.set("b.db.test", a("b.db.test", "fd00::2", 60))
			},
			src:  Source{SRV: svc},
			want: "10.0.0.1:5432/1 10.0.0.2:5432/1b [fd00::2]:5432/1b",
			ttl:  5 * time.Second,
			queries: "udp TypeSRV _pg._tcp.db.test.\nudp TypeA a.db.test.\nudp TypeAAAA a.db.test.\n" +
				"udp TypeA b.db.test.\nudp TypeAAAA b.db.test.",
		},
		{
			name: "srv target dot skipped",
			zone: func(f *fakeDNS) {
				f.set(svc, srv(svc, ".", 0, 0, 0, 60))
			},
			src: Source{SRV: svc},
			err: ErrNoRecords,
		},
		{
			name: "host a and aaaa",
			zone: func(f *fakeDNS) {
				f.set("db.test", a("db.test", "10.0.0.2", 30), a("db.test", "10.0.0.1", 30))
				f.set("db.test", a("db.test", "::1", 10))
			},
			src:  Source{Host: "DB.test", Port: 6379},
			want: "10.0.0.1:6379/1 10.0.0.2:6379/1 [::1]:6379/1",
			ttl:  10 * time.Second,
		},
		{
			name: "host through a cname",
			zone: func(f *fakeDNS) {
				f.set("db.test", cname("db.test", "real.test", 30))
				f.set("real.test", a("real.test", "10.0.0.7", 30))
			},
			src:  Source{Host: "db.test", Port: 1},
			want: "10.0.0.7:1/1",
			ttl:  30 * time.Second,
		},
		{
			name: "truncated answer retried over tcp",
			zone: func(f *fakeDNS) {
				f.set("db.test", a("db.test", "10.0.0.1", 30))
				f.truncate = true
			},
			src:     Source{Host: "db.test", Port: 1},
			want:    "10.0.0.1:1/1",
			ttl:     30 * time.Second,
			queries: "udp TypeA db.test.\ntcp TypeA db.test.\nudp TypeAAAA db.test.\ntcp TypeAAAA db.test.",
		},
		{
			name: "nxdomain",
			zone: func(f *fakeDNS) { f.rcode = dnsmessage.RCodeNameError },
			src:  Source{Host: "db.test", Port: 1},
			err:  ErrNoRecords,
		},
		{
			name:    "servfail",
			zone:    func(f *fakeDNS) { f.rcode = dnsmessage.RCodeServerFailure },
			src:     Source{SRV: svc},
			errText: "_pg._tcp.db.test. TypeSRV: SERVFAIL",
		},
		{
			name:    "silent server",
			zone:    func(f *fakeDNS) { f.silent = true },
			src:     Source{Host: "db.test", Port: 1, Timeout: 100 * time.Millisecond},
			timeout: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFakeDNS(t)
			f.update(func() { tt.zone(f) })
			tt.src.Resolver = f.addr
			res, err := tt.src.Resolve(context.Background())
			switch {
			case tt.timeout:
				if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Resolve error %v, want a timeout", err)
				}
				return
			case tt.err != nil || tt.errText != "":
				if err == nil || tt.err != nil && !errors.Is(err, tt.err) || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("Resolve error %v, want %v %q", err, tt.err, tt.errText)
				}
				return
			case err != nil:
				t.Fatalf("Resolve: %v\nqueries:\n%s", err, f.log())
			}
			if got := show(res.Backends); got != tt.want || res.TTL != tt.ttl {
				t.Errorf("Resolve = %s ttl %v, want %s ttl %v", got, res.TTL, tt.want, tt.ttl)
			}
			if tt.queries != "" && f.log() != tt.queries {
				t.Errorf("queries:\n%s\nwant:\n%s", f.log(), tt.queries)
			}
		})
	}
}

// TestResolveCancelled checks that ending ctx cuts an exchange short.
func TestResolveCancelled(t *testing.T) {
	f := startFakeDNS(t)
	f.update(func() { f.silent = true })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := Source{Host: "db.test", Port: 1, Resolver: f.addr, Timeout: time.Hour}.Resolve(ctx)
	if !errors.Is(err, context.Canceled) || time.Since(start) > 10*time.Second {
		t.Errorf("Resolve = %v after %v, want context.Canceled at once", err, time.Since(start))
	}
}

// FuzzParse feeds arbitrary bytes to the answer parser, as a hostile or
// broken resolver would send them, and to the record lookups on what it
// accepts.
func FuzzParse(f *testing.F) {
	q := dnsmessage.Question{Name: dnsmessage.MustNewName("_pg._tcp.db.test."), Type: dnsmessage.TypeSRV, Class: dnsmessage.ClassINET}
	m := dnsmessage.Message{Header: dnsmessage.Header{ID: 7, Response: true}, Questions: []dnsmessage.Question{q},
		Answers:     []dnsmessage.Resource{srv("_pg._tcp.db.test", "a.db.test", 1, 2, 3, 4), cname("_pg._tcp.db.test", "x.test", 1)},
		Additionals: []dnsmessage.Resource{a("a.db.test", "10.0.0.1", 5), a("a.db.test", "::1", 5)}}
	seed, err := m.Pack()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	m.Truncated = true
	trunc, _ := m.Pack()
	f.Add(trunc)
	f.Add([]byte{0, 7, 0x80, 0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		res, _, err := parse(raw, 7, q)
		if err != nil || res == nil {
			return
		}
		r := &resolver{ttl: -1}
		for _, rr := range res.answers("_pg._tcp.db.test", dnsmessage.TypeSRV) {
			if _, ok := rr.Body.(*dnsmessage.SRVResource); !ok {
				t.Fatalf("SRV answer with body %T", rr.Body)
			}
		}
		r.collect(res.additional("a.db.test"))
		r.collect(res.answers("a.db.test", dnsmessage.TypeA))
	})
}
