package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"

	"sluice/internal/pool"
	"sluice/l4/udp"
)

// A binary upgrade hands the UDP sessions over after the TCP connections,
// in the same stream of frames: a handoffMsg whose UDP list is not empty
// carries a batch of one listener's sessions, their sockets attached in
// order. The old process stops reading the UDP listening sockets as it
// exports their sessions; the new one, which has held the sockets it
// inherited unread since it started (udp.Server.Held), reads them once it
// has adopted the sessions, so that a flow never has two sessions (two
// source ports towards its backend).

// udpBatch is the most sessions (and sockets) one frame carries: below
// the kernel's SCM_MAX_FD (253) descriptors per message.
const udpBatch = 200

// exportedUDP is what one UDP proxy gave up for the new process.
type exportedUDP struct {
	s    *udp.Server
	hs   []udp.Handoff
	sent int // how many of hs went to the new process
}

// exportUDP exports the sessions of the UDP proxies whose listener the
// new process serves on the same sockets; those proxies stop reading.
func (d *daemon) exportUDP() []exportedUDP {
	accept := map[string]bool{}
	for _, name := range d.up.acceptUDP {
		accept[name] = true
	}
	var out []exportedUDP
	for _, l := range d.in.lns {
		if s, ok := l.srv.(*udp.Server); ok && accept[l.name] {
			out = append(out, exportedUDP{s: s, hs: s.Export()})
		}
	}
	return out
}

// sendUDP sends the sessions of us over ctl, in batches.
func sendUDP(ctl *net.UnixConn, us []exportedUDP) error {
	for i := range us {
		e := &us[i]
		for e.sent < len(e.hs) {
			b := e.hs[e.sent:min(e.sent+udpBatch, len(e.hs))]
			fds := make([]int, len(b))
			for j, h := range b {
				fds[j] = h.FD
			}
			if err := writeFrame(ctl, handoffMsg{Listener: e.s.Name, UDP: b}, fds...); err != nil {
				return err
			}
			e.sent += len(b)
		}
	}
	return nil
}

// releaseUDP closes this process's copies of the sessions' sockets, once
// the new process has its own.
func releaseUDP(us []exportedUDP) {
	for _, e := range us {
		closeUDP(e.hs)
	}
}

func closeUDP(hs []udp.Handoff) {
	for _, h := range hs {
		unix.Close(h.FD)
	}
}

// takeBackUDP undoes exportUDP after the new process failed: the sessions
// it was not sent go back to their proxies, which read again; those it was
// sent are closed (the flow's next datagram opens a session afresh).
func (d *daemon) takeBackUDP(ctx context.Context, us []exportedUDP) {
	backend := backendFinder(d.pools)(nil)
	for _, e := range us {
		closeUDP(e.hs[:e.sent])
		if _, err := e.s.Import(ctx, e.hs[e.sent:], backend); err != nil {
			d.base.Error("taking udp sessions back", slog.String("listener", e.s.Name), slog.String("error", err.Error()))
		}
		e.s.Resume()
		if e.sent > 0 {
			d.base.Warn("udp sessions closed: sent to the new process before it failed", slog.String("listener", e.s.Name),
				slog.Int("sessions", e.sent))
		}
	}
}

// heldUDP returns the new process's UDP proxies on inherited sockets, by
// listener name: they adopt the old process's sessions.
func (d *daemon) heldUDP() map[string]*live {
	out := map[string]*live{}
	for _, l := range d.in.lns {
		if s, ok := l.srv.(*udp.Server); ok && s.Held {
			out[l.name] = l
		}
	}
	return out
}

// adoptUDP imports the sessions received, by listener, into the proxies of
// held. It returns how many it adopted, and the errors.
func adoptUDP(ctx context.Context, held map[string]*live, by map[string][]udp.Handoff,
	backend func(*pool.Pool) func(netip.AddrPort) *pool.Backend) (int, []string) {
	n := 0
	var errs []string
	for name, hs := range by {
		l := held[name]
		got, err := l.srv.(*udp.Server).Import(ctx, hs, backend(l.pool))
		n += got
		if err != nil {
			errs = append(errs, fmt.Sprintf("listener %s: %v", name, err))
		}
	}
	return n, errs
}
