package admin

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
)

// UpgradeRequest is the body of POST /api/v1/upgrade; it may be empty.
type UpgradeRequest struct {
	// Binary is the program to start instead of the one sluice was
	// started from (the same path, where a new build is usually put).
	// Only a request over a Unix-socket admin listener may name one:
	// over TCP, a token would otherwise be enough to run any program as
	// sluice's user.
	Binary string `json:"binary,omitempty"`
}

// UpgradeJSON is the answer to POST /api/v1/upgrade: "ok" with the new
// process's pid, or "failed" with why (this process serves on).
type UpgradeJSON struct {
	Result string `json:"result"`
	PID    int    `json:"pid,omitempty"`
	Error  string `json:"error,omitempty"`
}

// upgrade starts a new sluice binary on this one's sockets and hands it
// the established connections, as SIGUSR2 does: 200 once the new process
// serves (this one then drains and exits), 422 when it failed.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request) {
	if s.o.Upgrade == nil {
		writeError(w, http.StatusNotImplemented, errors.New("admin: this sluice cannot upgrade"))
		return
	}
	var req UpgradeRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, errors.New("admin: the body must be {\"binary\": PATH} or empty"))
		return
	}
	if req.Binary != "" {
		if _, local := r.Context().Value(http.LocalAddrContextKey).(*net.UnixAddr); !local {
			writeError(w, http.StatusForbidden, errors.New("admin: a binary may be named only over a Unix-socket admin listener; over TCP the upgrade starts the path sluice was started from"))
			return
		}
	}
	pid, err := s.o.Upgrade(req.Binary)
	if err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, UpgradeJSON{Result: "failed", Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, UpgradeJSON{Result: "ok", PID: pid})
}
