package udp

// End says why a session ended. It is logged with every session.
type End uint8

const (
	// EndNone means the session has not ended yet.
	EndNone End = iota
	// EndIdleTimeout: no datagram either way for the session timeout.
	EndIdleTimeout
	// EndResponses: the backend sent the replies the listener allows per
	// session (Server.Responses, such as one for DNS).
	EndResponses
	// EndBackendDown: the backend was marked down (failing its health
	// checks, or ejected); the client's datagram that noticed it opened a
	// new session with another backend. A draining backend keeps its
	// sessions.
	EndBackendDown
	// EndBackendRefused: the backend's host answered with ICMP port
	// unreachable (nothing listens there), so the next datagram of the
	// flow picks a backend afresh.
	EndBackendRefused
	// EndBackendError: sending to or reading from the backend failed
	// otherwise; the error is logged.
	EndBackendError
	// EndDrain: the server shut down and the drain timeout ran out.
	EndDrain
	// EndEvicted: the session table was full (Server.MaxSessions) and this
	// was the least recently active session, idle for at least
	// Server.EvictIdle, so it made room for a new flow.
	EndEvicted
)

var endNames = [...]string{
	EndNone:           "none",
	EndIdleTimeout:    "idle_timeout",
	EndResponses:      "responses",
	EndBackendDown:    "backend_down",
	EndBackendRefused: "backend_refused",
	EndBackendError:   "backend_error",
	EndDrain:          "drain",
	EndEvicted:        "evicted",
}

// String returns the name logged for e.
func (e End) String() string {
	if int(e) < len(endNames) {
		return endNames[e]
	}
	return "unknown"
}
