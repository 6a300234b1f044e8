// Package bgp announces a host's virtual addresses to its routers over BGP,
// so that several sluice hosts can share one address through the routers'
// ECMP. A prefix is announced while every listener that serves it is up
// and has a backend to send to, and withdrawn when one has none, when the
// host is drained, and first of all at shutdown.
//
//	s, _ := bgp.New(bgp.Options{LocalAS: 65001, RouterID: id, Peers: peers})
//	s.Start()                          // sessions come up in the background
//	s.SetRoutes([]bgp.Route{{Listener: "web", Prefix: vip, Ready: up}})
//	defer s.Stop()                     // after s.WithdrawAll and a delay
//
// The protocol is GoBGP's (github.com/osrg/gobgp/v3, as a library: no gRPC
// server, no listening socket); this package keeps what sluice decides,
// when to announce, apart from how BGP says it.
package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// Defaults for zero-valued fields.
const (
	DefaultHoldTime     = 90 * time.Second // RFC 4271 section 10's suggestion
	DefaultConnectRetry = 5 * time.Second
	DefaultPort         = 179
	// DefaultInterval is how often listeners' readiness is read. A
	// withdraw is as late as this plus the router's processing, well
	// inside any hold time.
	DefaultInterval = 200 * time.Millisecond
)

// Options configure a Speaker. The zero value of each optional field is
// documented.
type Options struct {
	// LocalAS is this host's autonomous system number. Required.
	LocalAS uint32
	// RouterID is the BGP identifier, an IPv4 address. Required.
	RouterID netip.Addr
	// Peers are the routers to open sessions to; sluice connects to them
	// and does not listen.
	Peers []Peer
	// Communities are RFC 1997 communities (high 16 bits the AS) attached
	// to every announcement; nil attaches none.
	Communities []uint32
	// MED, if SendMED, is the MULTI_EXIT_DISC attached to announcements,
	// for routers that prefer one host (lower wins).
	MED     uint32
	SendMED bool
	// Interval is how often each route's Ready is called; zero means
	// DefaultInterval.
	Interval time.Duration
	// Logger receives session state changes and announcements at Info,
	// GoBGP's own messages at Debug (its warnings and errors as such).
	// Nil means slog.Default().
	Logger *slog.Logger
}

// Peer is one BGP neighbour.
type Peer struct {
	// Addr is the neighbour's address. Required.
	Addr netip.Addr
	// Port is its BGP port; zero means 179.
	Port uint16
	// AS is its autonomous system number (equal to LocalAS: iBGP).
	AS uint32
	// Password, if not empty, signs the session with TCP MD5 (RFC 2385).
	Password string
	// HoldTime is the hold time offered (keep-alives go at a third of
	// it); zero means DefaultHoldTime.
	HoldTime time.Duration
	// ConnectRetry is the wait between connection attempts while the
	// session is down; zero means DefaultConnectRetry (GoBGP's own 120 s
	// would keep a restarted router without routes for minutes).
	ConnectRetry time.Duration
}

// Route is a prefix announced on behalf of a listener.
type Route struct {
	// Listener names the listener, for the log and the status.
	Listener string
	// Prefix is announced (a /32 or /128 for a virtual address).
	Prefix netip.Prefix
	// Ready reports whether the listener can serve: it is up and its
	// pool has a backend up. A prefix is announced only while every
	// route naming it is ready. Nil means always ready. Called every
	// Interval from the Speaker's goroutine, and from SetDrained's
	// caller: it must be cheap and safe for concurrent use.
	Ready func() bool
}

// Speaker is this host's BGP speaker. Its methods are safe for concurrent
// use.
type Speaker struct {
	o   Options
	log *slog.Logger
	srv *server.BgpServer

	cancelWatch context.CancelFunc
	kick        chan struct{}
	stop        chan struct{}
	done        sync.WaitGroup

	syncMu sync.Mutex // one sync at a time: the loop's, or WithdrawAll's

	mu        sync.Mutex
	stopped   bool
	routes    []Route
	drained   bool // by the admin: nothing announced
	withdrawn bool // at shutdown: nothing announced, for good
	announced map[netip.Prefix]bool
	peers     map[netip.Addr]*PeerStatus
}

// New checks o and makes a Speaker; Start opens its sessions.
func New(o Options) (*Speaker, error) {
	if o.LocalAS == 0 {
		return nil, errors.New("bgp: local AS is required")
	}
	if !o.RouterID.Is4() {
		return nil, fmt.Errorf("bgp: router id %v is not an IPv4 address", o.RouterID)
	}
	s := &Speaker{o: o, log: o.Logger, kick: make(chan struct{}, 1), stop: make(chan struct{}),
		announced: map[netip.Prefix]bool{}, peers: map[netip.Addr]*PeerStatus{}}
	if s.log == nil {
		s.log = slog.Default()
	}
	for _, p := range o.Peers {
		if !p.Addr.IsValid() || p.AS == 0 {
			return nil, fmt.Errorf("bgp: peer %v: address and AS are required", p.Addr)
		}
		s.peers[p.Addr] = &PeerStatus{Addr: p.Addr, AS: p.AS, State: "idle"}
	}
	return s, nil
}

// Start starts GoBGP and opens the sessions to the peers; it returns once
// they are configured, not established.
func (s *Speaker) Start() error {
	// GoBGP's Serve loop has no way to end: it is one goroutine for the
	// life of the process, which is why a Speaker outlives reloads.
	s.srv = server.NewBgpServer(server.LoggerOption(logger{s.log}))
	go s.srv.Serve()
	ctx := context.Background()
	if err := s.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: s.o.LocalAS, RouterId: s.o.RouterID.String(),
		ListenPort: -1, // connect to the routers; open no port
	}}); err != nil {
		return fmt.Errorf("starting bgp: %w", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	if err := s.srv.WatchEvent(wctx, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, s.peerEvent); err != nil {
		cancel()
		s.srv.StopBgp(ctx, &api.StopBgpRequest{})
		return fmt.Errorf("watching bgp sessions: %w", err)
	}
	for _, p := range s.o.Peers {
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(p)}); err != nil {
			cancel()
			s.srv.StopBgp(ctx, &api.StopBgpRequest{})
			return fmt.Errorf("adding bgp peer %v: %w", p.Addr, err)
		}
	}
	s.cancelWatch = cancel
	s.done.Go(s.loop)
	return nil
}

// Stop withdraws everything, closes the sessions (a CEASE to each peer,
// which drops what was announced there anyway) and joins the Speaker's
// goroutine. It is idempotent.
func (s *Speaker) Stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	s.mu.Unlock()
	if s.cancelWatch == nil {
		return // never started, or Start failed and cleaned up
	}
	s.WithdrawAll()
	close(s.stop)
	s.done.Wait()
	s.cancelWatch()
	s.srv.StopBgp(context.Background(), &api.StopBgpRequest{})
}

// SetRoutes replaces the routes; the next sync announces and withdraws the
// difference.
func (s *Speaker) SetRoutes(routes []Route) {
	s.mu.Lock()
	s.routes = routes
	s.mu.Unlock()
	s.poke()
}

// SetDrained withdraws every prefix (true) or lets them be announced again
// (false), as the admin drains or enables the host. It returns once the
// withdraws are handed to GoBGP.
func (s *Speaker) SetDrained(drained bool) {
	s.mu.Lock()
	changed := s.drained != drained
	s.drained = drained
	s.mu.Unlock()
	if changed {
		s.log.Info("bgp host drain", slog.Bool("drained", drained))
		s.sync()
	}
}

// WithdrawAll withdraws every prefix for good: the first step of a
// shutdown, before the routers are given time to move traffic away and the
// connections are drained.
func (s *Speaker) WithdrawAll() {
	s.mu.Lock()
	s.withdrawn = true
	s.mu.Unlock()
	s.sync()
}

func (s *Speaker) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// loop re-reads readiness every interval, and at once after a poke.
func (s *Speaker) loop() {
	iv := s.o.Interval
	if iv <= 0 {
		iv = DefaultInterval
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		s.sync()
		select {
		case <-s.stop:
			return
		case <-s.kick:
		case <-t.C:
		}
	}
}
