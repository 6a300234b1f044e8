package admin

import (
	"errors"
	"net/http"
	"strings"
)

// ReloadJSON is the answer to POST /api/v1/reload: "ok", or "failed"
// with every error of the file (the running configuration is unchanged).
type ReloadJSON struct {
	Result string   `json:"result"`
	Errors []string `json:"errors,omitempty"`
}

// reload reloads the configuration file, as SIGHUP does, and says how it
// went: 200 when applied, 422 with the errors when the running
// configuration was kept.
func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	if s.o.Reload == nil {
		writeError(w, http.StatusNotImplemented, errors.New("admin: this sluice cannot reload its configuration"))
		return
	}
	err := s.o.Reload()
	if err == nil {
		writeJSON(w, http.StatusOK, ReloadJSON{Result: "ok"})
		return
	}
	writeJSON(w, http.StatusUnprocessableEntity, ReloadJSON{Result: "failed", Errors: ErrorLines(err)})
}

// ErrorLines splits err's text into its lines: a configuration's errors
// print one per line (as sluice check prints them), each with its file
// and line.
func ErrorLines(err error) []string {
	return strings.Split(err.Error(), "\n")
}
