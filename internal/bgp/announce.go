package bgp

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// sync announces the prefixes whose routes are all ready and withdraws the
// others; with the host drained or withdrawn, it withdraws everything.
func (s *Speaker) sync() {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	routes, drained, withdrawn := s.routes, s.drained, s.withdrawn
	s.mu.Unlock()
	ready := map[netip.Prefix]bool{}
	if !drained && !withdrawn {
		for _, r := range routes {
			ok := r.Ready == nil || r.Ready()
			if was, seen := ready[r.Prefix]; seen {
				ok = ok && was
			}
			ready[r.Prefix] = ok
		}
	}
	for _, p := range sortedPrefixes(ready) {
		if ready[p] && !s.isAnnounced(p) {
			s.announce(p, listenersOf(routes, p))
		}
	}
	s.mu.Lock()
	var gone []netip.Prefix
	for p := range s.announced {
		if !ready[p] {
			gone = append(gone, p)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(gone, netip.Prefix.Compare)
	for _, p := range gone {
		s.withdraw(p, withdrawReason(drained, withdrawn, routes, p), listenersOf(routes, p))
	}
}

func (s *Speaker) isAnnounced(p netip.Prefix) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.announced[p]
}

func (s *Speaker) announce(p netip.Prefix, listeners string) {
	if _, err := s.srv.AddPath(context.Background(), &api.AddPathRequest{Path: s.path(p)}); err != nil {
		s.log.Error("bgp announce failed", slog.String("prefix", p.String()), slog.String("error", err.Error()))
		return
	}
	s.mu.Lock()
	s.announced[p] = true
	s.mu.Unlock()
	s.log.Info("bgp announce", slog.String("prefix", p.String()), slog.String("listeners", listeners))
}

func (s *Speaker) withdraw(p netip.Prefix, reason, listeners string) {
	if err := s.srv.DeletePath(context.Background(), &api.DeletePathRequest{Family: family(p), Path: s.path(p)}); err != nil {
		s.log.Error("bgp withdraw failed", slog.String("prefix", p.String()), slog.String("error", err.Error()))
		return
	}
	s.mu.Lock()
	delete(s.announced, p)
	s.mu.Unlock()
	s.log.Info("bgp withdraw", slog.String("prefix", p.String()), slog.String("reason", reason),
		slog.String("listeners", listeners))
}

// withdrawReason says why p is withdrawn, for the log.
func withdrawReason(drained, withdrawn bool, routes []Route, p netip.Prefix) string {
	switch {
	case withdrawn:
		return "shutdown"
	case drained:
		return "drained"
	case listenersOf(routes, p) == "":
		return "removed"
	}
	return "not_ready" // a listener down, or its pool without a backend up
}

func listenersOf(routes []Route, p netip.Prefix) string {
	var names []string
	for _, r := range routes {
		if r.Prefix == p && !slices.Contains(names, r.Listener) {
			names = append(names, r.Listener)
		}
	}
	return strings.Join(names, ",")
}

func sortedPrefixes[V any](m map[netip.Prefix]V) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	slices.SortFunc(out, netip.Prefix.Compare)
	return out
}

func family(p netip.Prefix) *api.Family {
	if p.Addr().Is4() {
		return &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	}
	return &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
}

// path is the announcement of p: origin IGP, this host as next hop (the
// unspecified address, which GoBGP replaces with each session's local
// address), the configured communities and MED.
func (s *Speaker) path(p netip.Prefix) *api.Path {
	nlri := mustAny(&api.IPAddressPrefix{Prefix: p.Addr().String(), PrefixLen: uint32(p.Bits())})
	attrs := []*anypb.Any{mustAny(&api.OriginAttribute{Origin: 0})}
	f := family(p)
	if p.Addr().Is4() {
		attrs = append(attrs, mustAny(&api.NextHopAttribute{NextHop: "0.0.0.0"}))
	} else {
		attrs = append(attrs, mustAny(&api.MpReachNLRIAttribute{Family: f, NextHops: []string{"::"}, Nlris: []*anypb.Any{nlri}}))
	}
	if len(s.o.Communities) > 0 {
		attrs = append(attrs, mustAny(&api.CommunitiesAttribute{Communities: s.o.Communities}))
	}
	if s.o.SendMED {
		attrs = append(attrs, mustAny(&api.MultiExitDiscAttribute{Med: s.o.MED}))
	}
	return &api.Path{Family: f, Nlri: nlri, Pattrs: attrs}
}

// mustAny wraps a message of GoBGP's API, which cannot fail to marshal.
func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}
