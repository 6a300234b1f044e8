// Package sniroute routes TLS connections by the server name in their
// ClientHello without decrypting them (SNI passthrough): it is an
// l4.PreambleParser that peeks the hello, consumes nothing, and picks the
// connection's pool, so the backend gets the untouched handshake and l4
// splices the rest.
//
//	r := sniroute.New([]sniroute.Route{{Names: []string{"*.example.com"}, Pool: web}}, fallback)
//	srv := &l4.Server{Pool: fallback, Preamble: r, PreambleTimeout: 5 * time.Second}
package sniroute

import (
	"errors"
	"fmt"
	"strings"

	"sluice/internal/clienthello"
	"sluice/l4"
)

// ErrUnknownName refuses a connection whose server name (or lack of one)
// no route covers, when there is no default pool.
var ErrUnknownName = errors.New("sniroute: no route for the server name")

// Route sends the connections for some names to a pool.
type Route struct {
	// Names are exact host names ("db.example.com") and one-label
	// wildcards ("*.example.com": below it, not itself); matched case-
	// insensitively.
	Names []string
	// Pool picks the backends of those connections.
	Pool l4.Picker
}

// Router is the l4.PreambleParser; build it with New.
type Router struct {
	exact map[string]l4.Picker
	wild  map[string]l4.Picker // "example.com" for "*.example.com"
	def   l4.Picker
}

var _ l4.PreambleParser = (*Router)(nil)

// New builds a Router. The first route naming a name wins. Connections
// whose name no route covers, and those without one, go to def; nil
// refuses them.
func New(routes []Route, def l4.Picker) *Router {
	r := &Router{exact: map[string]l4.Picker{}, wild: map[string]l4.Picker{}, def: def}
	for _, rt := range routes {
		for _, n := range rt.Names {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			m, key := r.exact, n
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				m, key = r.wild, rest
			}
			if _, dup := m[key]; !dup {
				m[key] = rt.Pool
			}
		}
	}
	return r
}

// Pick returns the pool for a server name, or nil.
func (r *Router) Pick(name string) l4.Picker {
	if name != "" {
		if p := r.exact[name]; p != nil {
			return p
		}
		if _, parent, ok := strings.Cut(name, "."); ok {
			if p := r.wild[parent]; p != nil {
				return p
			}
		}
	}
	return r.def
}

// ParsePreamble implements l4.PreambleParser. It consumes nothing: the
// hello stays in the socket for the backend.
func (r *Router) ParsePreamble(peeked []byte, c *l4.Client) (int, error) {
	name, err := clienthello.ServerName(peeked)
	switch {
	case errors.Is(err, clienthello.ErrIncomplete):
		return 0, l4.ErrNeedMore
	case err != nil:
		return 0, fmt.Errorf("reading the TLS ClientHello: %w", err)
	}
	c.ServerName = name
	p := r.Pick(name)
	if p == nil {
		if name == "" {
			return 0, fmt.Errorf("%w: the client sent none", ErrUnknownName)
		}
		return 0, fmt.Errorf("%w %q", ErrUnknownName, name)
	}
	c.Pool = p
	return 0, nil
}
