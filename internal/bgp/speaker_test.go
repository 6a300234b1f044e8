package bgp

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"sluice/internal/testutil"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// router is a second GoBGP, listening on loopback, standing in for a
// router: it accepts the Speaker's session and shows what it learnt.
type router struct {
	srv  *server.BgpServer
	port uint16
}

func startRouter(t *testing.T, peerAS uint32) *router { return startRouterOn(t, "127.0.0.1", peerAS) }

// startRouterOn starts the router on loopback address addr, peering with
// the same address.
func startRouterOn(t *testing.T, addr string, peerAS uint32) *router {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	r := &router{srv: server.NewBgpServer(server.LoggerOption(logger{discard()})), port: port}
	go r.srv.Serve()
	ctx := context.Background()
	if err := r.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: 65000, RouterId: "192.0.2.254",
		ListenPort: int32(port), ListenAddresses: []string{addr}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.srv.StopBgp(context.Background(), &api.StopBgpRequest{}) })
	if err := r.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: addr, PeerAsn: peerAS},
		AfiSafis: []*api.AfiSafi{
			{Config: &api.AfiSafiConfig{Enabled: true, Family: family(netip.MustParsePrefix("0.0.0.0/0"))}},
			{Config: &api.AfiSafiConfig{Enabled: true, Family: family(netip.MustParsePrefix("::/0"))}},
		},
		Transport: &api.Transport{PassiveMode: true},
		Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: 9, KeepaliveInterval: 3}},
	}}); err != nil {
		t.Fatal(err)
	}
	return r
}

// learnt returns the IPv4 prefixes in the router's table with their MEDs
// and communities.
func (r *router) learnt(t *testing.T) map[netip.Prefix]string {
	return r.learntIn(t, family(netip.MustParsePrefix("0.0.0.0/0")))
}

// learntIn returns the prefixes of family f in the router's table, with
// their attributes (MED, communities, and an IPv6 route's next hop).
func (r *router) learntIn(t *testing.T, f *api.Family) map[netip.Prefix]string {
	t.Helper()
	out := map[netip.Prefix]string{}
	err := r.srv.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL,
		Family: f}, func(d *api.Destination) {
		p := netip.MustParsePrefix(d.Prefix)
		for _, path := range d.Paths {
			desc := ""
			for _, a := range path.Pattrs {
				m, _ := anypb.UnmarshalNew(a, proto.UnmarshalOptions{})
				switch v := m.(type) {
				case *api.MultiExitDiscAttribute:
					desc += " med=" + strconv.FormatUint(uint64(v.Med), 10)
				case *api.MpReachNLRIAttribute:
					desc += " nexthop=" + strings.Join(v.NextHops, ",")
				case *api.CommunitiesAttribute:
					for _, c := range v.Communities {
						desc += " community=" + strconv.Itoa(int(c>>16)) + ":" + strconv.Itoa(int(c&0xffff))
					}
				}
			}
			out[p] = desc
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSpeakerAnnouncesAndWithdraws(t *testing.T) {
	r := startRouter(t, 65001)
	c := uint32(65001<<16 | 42) // 65001:42
	s, err := New(Options{LocalAS: 65001, RouterID: netip.MustParseAddr("192.0.2.1"),
		Peers:       []Peer{{Addr: netip.MustParseAddr("127.0.0.1"), Port: r.port, AS: 65000, HoldTime: 9 * time.Second, ConnectRetry: time.Second}},
		Communities: []uint32{c}, MED: 7, SendMED: true, Interval: 20 * time.Millisecond, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	vip, other := netip.MustParsePrefix("198.51.100.10/32"), netip.MustParsePrefix("198.51.100.11/32")
	var webUp, dbUp atomic.Bool
	webUp.Store(true)
	s.SetRoutes([]Route{
		{Listener: "web", Prefix: vip, Ready: webUp.Load},
		{Listener: "tls", Prefix: vip, Ready: func() bool { return true }},
		{Listener: "db", Prefix: other, Ready: dbUp.Load},
	})
	testutil.Eventually(t, 15*time.Second, "session established", func() bool { return s.Status().Peers[0].State == "established" })
	has := func(want ...netip.Prefix) func() bool {
		return func() bool {
			got := r.learnt(t)
			if len(got) != len(want) {
				return false
			}
			for _, p := range want {
				if _, ok := got[p]; !ok {
					return false
				}
			}
			return true
		}
	}
	testutil.Eventually(t, 15*time.Second, "the ready prefix announced, the other not", has(vip))
	if got := r.learnt(t)[vip]; got != " med=7 community=65001:42" {
		t.Errorf("attributes at the router: %q, want med 7 and community 65001:42", got)
	}
	dbUp.Store(true)
	testutil.Eventually(t, 15*time.Second, "the second prefix once its pool has a backend", has(vip, other))
	webUp.Store(false)
	testutil.Eventually(t, 15*time.Second, "a prefix withdrawn when one of its listeners is not ready", has(other))
	webUp.Store(true)
	testutil.Eventually(t, 15*time.Second, "announced again", has(vip, other))

	s.SetDrained(true)
	testutil.Eventually(t, 15*time.Second, "everything withdrawn while drained", has())
	st := s.Status()
	if !st.Drained || slices.ContainsFunc(st.Routes, func(r RouteStatus) bool { return r.Announced }) {
		t.Errorf("status while drained: %+v", st)
	}
	s.SetDrained(false)
	testutil.Eventually(t, 15*time.Second, "announced again after the drain", has(vip, other))
	s.WithdrawAll()
	testutil.Eventually(t, 15*time.Second, "everything withdrawn at shutdown", has())
	if st := s.Status(); st.Peers[0].State != "established" || !st.Withdrawn {
		t.Errorf("after WithdrawAll the session should stay up (the router must hear the withdraws): %+v", st)
	}
	dbUp.Store(true)
	s.sync()
	if got := r.learnt(t); len(got) != 0 {
		t.Errorf("announced after WithdrawAll: %v", got)
	}
}

// TestSpeakerAnnouncesIPv6 announces a /128 over an IPv6 session: the
// next hop is the session's own address, put in by GoBGP for "::".
func TestSpeakerAnnouncesIPv6(t *testing.T) {
	r := startRouterOn(t, "::1", 65001)
	s, err := New(Options{LocalAS: 65001, RouterID: netip.MustParseAddr("192.0.2.1"), Interval: 20 * time.Millisecond,
		Peers:  []Peer{{Addr: netip.MustParseAddr("::1"), Port: r.port, AS: 65000, ConnectRetry: time.Second}},
		Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	vip := netip.MustParsePrefix("2001:db8::10/128")
	s.SetRoutes([]Route{{Listener: "web", Prefix: vip}})
	v6 := family(vip)
	testutil.Eventually(t, 15*time.Second, "the IPv6 prefix at the router", func() bool { return r.learntIn(t, v6)[vip] != "" })
	if got := r.learntIn(t, v6)[vip]; got != " nexthop=::1" {
		t.Errorf("IPv6 route's attributes at the router: %q, want next hop ::1", got)
	}
	s.WithdrawAll()
	testutil.Eventually(t, 15*time.Second, "the IPv6 prefix withdrawn", func() bool { return len(r.learntIn(t, v6)) == 0 })
}
