package discover

import (
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// TestMain fails the run if a test leaves goroutines behind.
func TestMain(m *testing.M) {
	before := runtime.NumGoroutine()
	code := m.Run()
	// The fuzzing engine leaves a signal-handling goroutine behind.
	fuzzing := flag.Lookup("test.fuzz") != nil && flag.Lookup("test.fuzz").Value.String() != ""
	if code == 0 && !fuzzing {
		deadline := time.Now().Add(2 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			fmt.Fprintf(os.Stderr, "%d goroutines leaked\n", n-before)
			code = 1
		}
	}
	os.Exit(code)
}

// zoneKey names an RRset.
type zoneKey struct {
	name string // canonical
	typ  dnsmessage.Type
}

// fakeDNS is a DNS server on loopback, over UDP and TCP, answering from a
// zone the test changes. It is ours rather than dnsmasq so that a test can
// make it truncate, fail, leave out additional records or go silent;
// cmd/sluice's tests run discovery against dnsmasq.
type fakeDNS struct {
	addr netip.AddrPort
	udp  *net.UDPConn
	tcp  *net.TCPListener
	wg   sync.WaitGroup

	mu       sync.Mutex
	zone     map[zoneKey][]dnsmessage.Resource
	extra    map[zoneKey][]dnsmessage.Resource // additional records of an answer
	rcode    dnsmessage.RCode
	truncate bool // UDP answers are truncated
	silent   bool // no answers at all
	queries  []string
}

// startFakeDNS starts a server until the test ends.
func startFakeDNS(t *testing.T) *fakeDNS {
	t.Helper()
	// A UDP port whose TCP twin is free too.
	for range 100 {
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		port := udp.LocalAddr().(*net.UDPAddr).Port
		tcp, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err != nil {
			udp.Close()
			continue
		}
		f := &fakeDNS{addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)), udp: udp, tcp: tcp,
			zone: map[zoneKey][]dnsmessage.Resource{}, extra: map[zoneKey][]dnsmessage.Resource{}}
		f.wg.Go(f.serveUDP)
		f.wg.Go(f.serveTCP)
		t.Cleanup(func() {
			udp.Close()
			tcp.Close()
			f.wg.Wait()
		})
		return f
	}
	t.Fatal("no port free for both UDP and TCP")
	return nil
}

func (f *fakeDNS) serveUDP() {
	buf := make([]byte, 512)
	for {
		n, from, err := f.udp.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if out := f.answer(buf[:n], true); out != nil {
			f.udp.WriteToUDP(out, from)
		}
	}
}

func (f *fakeDNS) serveTCP() {
	for {
		c, err := f.tcp.Accept()
		if err != nil {
			return
		}
		f.wg.Go(func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			var n [2]byte
			if _, err := io.ReadFull(c, n[:]); err != nil {
				return
			}
			q := make([]byte, binary.BigEndian.Uint16(n[:]))
			if _, err := io.ReadFull(c, q); err != nil {
				return
			}
			if out := f.answer(q, false); out != nil {
				c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(out))), out...))
			}
		})
	}
}

// answer builds the reply to the query q.
func (f *fakeDNS) answer(q []byte, udp bool) []byte {
	var m dnsmessage.Message
	if m.Unpack(q) != nil || len(m.Questions) != 1 {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	qq := m.Questions[0]
	proto := "tcp"
	if udp {
		proto = "udp"
	}
	f.queries = append(f.queries, fmt.Sprintf("%s %s %s", proto, qq.Type, qq.Name))
	if f.silent {
		return nil
	}
	k := zoneKey{canonical(qq.Name.String()), qq.Type}
	m.Header = dnsmessage.Header{ID: m.ID, Response: true, Authoritative: true, RCode: f.rcode}
	switch {
	case f.rcode != dnsmessage.RCodeSuccess:
	case udp && f.truncate:
		m.Truncated = true
	default:
		m.Answers, m.Additionals = f.zone[k], f.extra[k]
		if m.Answers == nil && f.zone[zoneKey{k.name, dnsmessage.TypeCNAME}] != nil {
			m.Answers = f.zone[zoneKey{k.name, dnsmessage.TypeCNAME}]
			for _, c := range m.Answers {
				target := canonical(c.Body.(*dnsmessage.CNAMEResource).CNAME.String())
				m.Answers = append(m.Answers, f.zone[zoneKey{target, qq.Type}]...)
			}
		}
	}
	out, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return out
}

// update changes the server's zone or behaviour under its lock.
func (f *fakeDNS) update(change func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change()
}

// set replaces the records of name and type; the caller holds f.mu.
func (f *fakeDNS) set(name string, rrs ...dnsmessage.Resource) {
	f.zone[zoneKey{canonical(name), rrs[0].Header.Type}] = rrs
}

// setExtra sets the additional records of the answer for name and typ;
// the caller holds f.mu.
func (f *fakeDNS) setExtra(name string, typ dnsmessage.Type, rrs ...dnsmessage.Resource) {
	f.extra[zoneKey{canonical(name), typ}] = rrs
}

// drop removes the records of name and typ; the caller holds f.mu.
func (f *fakeDNS) drop(name string, typ dnsmessage.Type) {
	delete(f.zone, zoneKey{canonical(name), typ})
}

func (f *fakeDNS) log() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.queries, "\n")
}

func hdr(name string, typ dnsmessage.Type, ttl uint32) dnsmessage.ResourceHeader {
	return dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(canonical(name)), Type: typ,
		Class: dnsmessage.ClassINET, TTL: ttl}
}

func a(name, addr string, ttl uint32) dnsmessage.Resource {
	ip := netip.MustParseAddr(addr)
	if ip.Is4() {
		return dnsmessage.Resource{Header: hdr(name, dnsmessage.TypeA, ttl), Body: &dnsmessage.AResource{A: ip.As4()}}
	}
	return dnsmessage.Resource{Header: hdr(name, dnsmessage.TypeAAAA, ttl), Body: &dnsmessage.AAAAResource{AAAA: ip.As16()}}
}

func srv(name, target string, port, weight, priority uint16, ttl uint32) dnsmessage.Resource {
	return dnsmessage.Resource{Header: hdr(name, dnsmessage.TypeSRV, ttl), Body: &dnsmessage.SRVResource{
		Target: dnsmessage.MustNewName(canonical(target)), Port: port, Weight: weight, Priority: priority}}
}

func cname(name, target string, ttl uint32) dnsmessage.Resource {
	return dnsmessage.Resource{Header: hdr(name, dnsmessage.TypeCNAME, ttl),
		Body: &dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName(canonical(target))}}
}
