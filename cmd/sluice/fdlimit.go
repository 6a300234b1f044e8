package main

import (
	"fmt"

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
// sockets, one parker (epoll) per socket, the runtime's own fds, and room
// for the pipes that connections borrow while bytes move (when pipes run
// short, sluice copies through user space rather than fail).
func fdLimiter(cfg *config.Config) (*l4.Limiter, uint64, error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return nil, 0, fmt.Errorf("reading the file descriptor limit: %w", err)
	}
	// Go raised the soft limit to the hard one when the process started.
	limit := rl.Cur
	sockets, configured, unlimited := uint64(0), uint64(0), false
	for _, l := range cfg.Listeners {
		sockets += uint64(l.Sockets)
		configured += uint64(l.MaxConnections)
		unlimited = unlimited || l.MaxConnections == 0
	}
	reserve := 2*sockets + 32 + max(limit/16, 8)
	if limit <= reserve+2 {
		return nil, limit, fmt.Errorf("the file descriptor limit (%d) leaves no room for connections beside %d listening sockets: raise it (ulimit -n, or LimitNOFILE= in systemd)", limit, sockets)
	}
	allowed := (limit - reserve) / 2
	if !unlimited && configured <= allowed {
		return nil, limit, nil
	}
	return l4.NewLimiter(int(allowed)), limit, nil
}
