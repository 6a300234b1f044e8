package admin

import (
	_ "embed"
	"net/http"
)

// The status page and its script are served from the binary: no
// framework, no CDN, so the page works on a host without Internet access.
var (
	//go:embed page/index.html
	pageHTML []byte
	//go:embed page/status.js
	pageJS []byte
)

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// The page runs only its own script and talks only to this server.
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(pageHTML)
}

func (s *Server) script(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(pageJS)
}
