package main

import (
	"fmt"
	"log/slog"

	"golang.org/x/sys/unix"

	"sluice/config"
	"sluice/l4"
)

// fdLimiter returns a cap on proxied connections shared by every listener,
// derived from the file descriptor limit as HAProxy derives maxconn from
// ulimit -n, or nil when the configured max_connections already fit. Past
// the cap new connections wait in the accept queue; without it, sluice
// would accept a client and then fail to open the backend socket (EMFILE),
// closing a connection it could have served a moment later.
//
// Each proxied connection holds two fds. The reserve covers the listening
// sockets, each one's event loop (an epoll and an eventfd), the runtime's
// own fds, and room for the pipes that connections borrow while bytes move
// (when pipes run short, sluice copies through user space rather than fail).
func fdLimiter(cfg *config.Config) (*l4.Limiter, uint64, error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return nil, 0, fmt.Errorf("reading the file descriptor limit: %w", err)
	}
	// Go raised the soft limit to the hard one when the process started.
	limit := rl.Cur
	sockets, udpSockets, configured, unlimited := uint64(0), uint64(0), uint64(0), false
	for _, l := range cfg.Listeners {
		if l.Protocol == config.UDP {
			// Each UDP socket's loop also holds an epoll and an
			// eventfd; its sessions are bounded by max_sessions
			// (see warnUDPSessions), not by this cap.
			udpSockets += uint64(l.Sockets)
			continue
		}
		if l.Protocol == config.HTTP {
			// net/http takes no cap from us (yet): its listening
			// sockets count, its connections do not.
			sockets += uint64(l.Sockets)
			continue
		}
		sockets += uint64(l.Sockets)
		configured += uint64(l.MaxConnections)
		unlimited = unlimited || l.MaxConnections == 0
	}
	reserve := 3*sockets + 3*udpSockets + 32 + max(limit/16, 8)
	if limit <= reserve+2 {
		return nil, limit, fmt.Errorf("the file descriptor limit (%d) leaves no room for connections beside %d listening sockets: raise it (ulimit -n, or LimitNOFILE= in systemd)", limit, sockets+udpSockets)
	}
	allowed := (limit - reserve) / 2
	if !unlimited && configured <= allowed {
		return nil, limit, nil
	}
	return l4.NewLimiter(int(allowed)), limit, nil
}

// warnUDPSessions warns when the UDP listeners' max_sessions add up to
// more than the file descriptor limit: each session holds a socket, so
// past the limit new flows are dropped (counted, and logged once a second)
// before the cap is reached.
func warnUDPSessions(cfg *config.Config, fdLimit uint64, log *slog.Logger) {
	var sessions uint64
	for _, l := range cfg.Listeners {
		if l.Protocol == config.UDP {
			sessions += uint64(l.MaxSessions)
		}
	}
	if sessions > fdLimit {
		log.Warn("udp max_sessions exceed the file descriptor limit; raise the limit or lower max_sessions",
			slog.Uint64("max_sessions", sessions), slog.Uint64("fd_limit", fdLimit))
	}
}
