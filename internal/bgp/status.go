package bgp

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/log"
)

// Status is what the Speaker is doing, for the admin API and metrics.
type Status struct {
	// Drained is set while the admin has drained the host.
	Drained bool `json:"drained"`
	// Withdrawn is set once shutdown has withdrawn everything.
	Withdrawn bool `json:"withdrawn"`
	// Peers are the sessions, in configuration order.
	Peers []PeerStatus `json:"peers"`
	// Routes are the configured prefixes, sorted, and whether each is
	// announced now.
	Routes []RouteStatus `json:"routes"`
}

// PeerStatus is one session's state.
type PeerStatus struct {
	Addr netip.Addr `json:"address"`
	AS   uint32     `json:"as"`
	// State is the session's FSM state in lower case: idle, connect,
	// active, opensent, openconfirm or established.
	State string `json:"state"`
	// Since is when State was entered; zero before the first change.
	Since time.Time `json:"since,omitzero"`
	// Established counts the times the session came up.
	Established int `json:"established_total"`
}

// RouteStatus is one prefix.
type RouteStatus struct {
	Prefix    netip.Prefix `json:"prefix"`
	Listeners []string     `json:"listeners"`
	Announced bool         `json:"announced"`
}

// Status returns the Speaker's current state.
func (s *Speaker) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Drained: s.drained, Withdrawn: s.withdrawn}
	for _, p := range s.o.Peers {
		st.Peers = append(st.Peers, *s.peers[p.Addr])
	}
	seen := map[netip.Prefix]bool{}
	for _, r := range s.routes {
		if !seen[r.Prefix] {
			seen[r.Prefix] = true
			st.Routes = append(st.Routes, RouteStatus{Prefix: r.Prefix,
				Listeners: strings.Split(listenersOf(s.routes, r.Prefix), ","), Announced: s.announced[r.Prefix]})
		}
	}
	slices.SortFunc(st.Routes, func(a, b RouteStatus) int { return a.Prefix.Compare(b.Prefix) })
	return st
}

// peerEvent records and logs a session's state change; GoBGP calls it from
// its own goroutine.
func (s *Speaker) peerEvent(r *api.WatchEventResponse) {
	pe := r.GetPeer()
	if pe == nil || pe.Type != api.WatchEventResponse_PeerEvent_STATE || pe.Peer == nil {
		return
	}
	addr, err := netip.ParseAddr(pe.Peer.GetConf().GetNeighborAddress())
	if err != nil {
		return
	}
	state := strings.ToLower(pe.Peer.GetState().GetSessionState().String())
	s.mu.Lock()
	ps := s.peers[addr]
	if ps == nil || ps.State == state {
		s.mu.Unlock()
		return
	}
	ps.State, ps.Since = state, time.Now()
	if state == "established" {
		ps.Established++
	}
	s.mu.Unlock()
	s.log.Info("bgp session", slog.String("peer", addr.String()), slog.Uint64("as", uint64(ps.AS)),
		slog.String("state", state))
}

// apiPeer is p in GoBGP's terms.
func apiPeer(p Peer) *api.Peer {
	hold := p.HoldTime
	if hold <= 0 {
		hold = DefaultHoldTime
	}
	retry := p.ConnectRetry
	if retry <= 0 {
		retry = DefaultConnectRetry
	}
	port := uint32(p.Port)
	if port == 0 {
		port = DefaultPort
	}
	fams := []*api.AfiSafi{}
	for _, afi := range []api.Family_Afi{api.Family_AFI_IP, api.Family_AFI_IP6} {
		fams = append(fams, &api.AfiSafi{Config: &api.AfiSafiConfig{Enabled: true,
			Family: &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST}}})
	}
	return &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: p.Addr.String(), PeerAsn: p.AS, AuthPassword: p.Password},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime: secs(hold), KeepaliveInterval: max(1, secs(hold)/3), ConnectRetry: secs(retry),
			IdleHoldTimeAfterReset: secs(retry),
		}},
		Transport: &api.Transport{RemotePort: port},
		AfiSafis:  fams,
	}
}

func secs(d time.Duration) uint64 { return uint64(max(1, d/time.Second)) }

// logger passes GoBGP's log to slog: its chatter at Debug, its warnings
// and errors as such.
type logger struct{ l *slog.Logger }

var _ log.Logger = logger{}

func (g logger) emit(level slog.Level, msg string, f log.Fields) {
	if !g.l.Enabled(context.Background(), level) {
		return
	}
	attrs := make([]slog.Attr, 0, len(f)+1)
	attrs = append(attrs, slog.String("component", "gobgp"))
	for k, v := range f {
		attrs = append(attrs, slog.Any(strings.ToLower(k), v))
	}
	g.l.LogAttrs(context.Background(), level, "bgp: "+msg, attrs...)
}

func (g logger) Panic(msg string, f log.Fields) { g.emit(slog.LevelError, msg, f); panic(msg) }

// Fatal is logged, not fatal: GoBGP calls it only for its gRPC server,
// which sluice does not start.
func (g logger) Fatal(msg string, f log.Fields) { g.emit(slog.LevelError, msg, f) }
func (g logger) Error(msg string, f log.Fields) { g.emit(slog.LevelError, msg, f) }
func (g logger) Warn(msg string, f log.Fields)  { g.emit(slog.LevelWarn, msg, f) }
func (g logger) Info(msg string, f log.Fields)  { g.emit(slog.LevelDebug, msg, f) }
func (g logger) Debug(msg string, f log.Fields) { g.emit(slog.LevelDebug-4, msg, f) }
func (g logger) SetLevel(log.LogLevel)          {}
func (g logger) GetLevel() log.LogLevel         { return log.DebugLevel }
