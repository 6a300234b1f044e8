package l4

// End says why a proxied connection ended. It is logged with every
// connection, like the termination codes of HAProxy's tcplog.
type End uint8

const (
	// EndNone means the connection has not ended yet.
	EndNone End = iota
	// EndClientClosed: the client sent FIN first and both sides finished.
	EndClientClosed
	// EndBackendClosed: the backend sent FIN first and both sides finished.
	EndBackendClosed
	// EndIdleTimeout: no bytes moved either way for the idle timeout.
	EndIdleTimeout
	// EndHalfClosedTimeout: one side had sent FIN and nothing moved for the
	// half-closed timeout.
	EndHalfClosedTimeout
	// EndClientReset: the client reset the connection (or it failed on the
	// client's side); the backend was reset in turn.
	EndClientReset
	// EndBackendReset: the backend reset the connection (or it failed on the
	// backend's side); the client was reset in turn.
	EndBackendReset
	// EndDrain: the server shut down and the drain timeout ran out.
	EndDrain
	// EndConnectFailed: no connect attempt succeeded within the retries;
	// the client was reset.
	EndConnectFailed
	// EndNoBackend: the pool had no backend to offer; the client was
	// reset.
	EndNoBackend
	// EndBackendDown: the backend's health checks marked it down in a pool
	// that closes its connections then (on_down = "close"); the client
	// was reset.
	EndBackendDown
	// EndBadPreamble: the client's preamble (a PROXY header) did not
	// parse; the client was reset.
	EndBadPreamble
	// EndPreambleTimeout: the client's preamble was not complete within
	// the preamble timeout; the client was reset.
	EndPreambleTimeout
	// EndDenied: the Admitter refused the client; it was reset.
	EndDenied
	// EndClientLimit: a per-client limit refused the client; it was reset.
	EndClientLimit
	// EndHandshakeFailed: the client's TLS handshake (or the protocol
	// negotiation before it) failed or timed out; it was closed (FIN,
	// after the alert or error written to it).
	EndHandshakeFailed
)

var endNames = [...]string{
	EndNone:              "none",
	EndClientClosed:      "client_closed",
	EndBackendClosed:     "backend_closed",
	EndIdleTimeout:       "idle_timeout",
	EndHalfClosedTimeout: "half_closed_timeout",
	EndClientReset:       "client_reset",
	EndBackendReset:      "backend_reset",
	EndDrain:             "drain",
	EndConnectFailed:     "connect_failed",
	EndNoBackend:         "no_backend",
	EndBackendDown:       "backend_down",
	EndBadPreamble:       "bad_preamble",
	EndPreambleTimeout:   "preamble_timeout",
	EndDenied:            "denied",
	EndClientLimit:       "client_limit",
	EndHandshakeFailed:   "handshake_failed",
}

// String returns the name logged for e.
func (e End) String() string {
	if int(e) < len(endNames) {
		return endNames[e]
	}
	return "unknown"
}
