package route

import "strings"

// Rewrite is what a forwarding route changes in a request and its
// response. The zero Rewrite changes nothing.
type Rewrite struct {
	// StripPrefix is taken off the front of the path, a segment prefix of
	// every path the route matches; AddPrefix is then put in front. The
	// result always starts with "/".
	StripPrefix, AddPrefix string
	// Host, if set, replaces the Host header sent to the backend.
	Host string
	// SetRequest and SetResponse set headers (canonical names), replacing
	// any values; RemoveRequest and RemoveResponse delete headers. Removal
	// comes first, then setting.
	SetRequest, SetResponse       map[string]string
	RemoveRequest, RemoveResponse []string
}

// Path returns p with the prefixes applied. It does not allocate when
// there is nothing to change.
func (rw *Rewrite) Path(p string) string {
	if rw.StripPrefix == "" && rw.AddPrefix == "" {
		return p
	}
	p = strings.TrimPrefix(p, strings.TrimSuffix(rw.StripPrefix, "/"))
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	if rw.AddPrefix != "" {
		p = strings.TrimSuffix(rw.AddPrefix, "/") + p
	}
	return p
}

// HeaderEditor is the part of a header map rewriting needs; http.Header
// has it.
type HeaderEditor interface {
	Set(name, value string)
	Del(name string)
}

// Request applies the request header rules to h.
func (rw *Rewrite) Request(h HeaderEditor) { apply(h, rw.RemoveRequest, rw.SetRequest) }

// Response applies the response header rules to h.
func (rw *Rewrite) Response(h HeaderEditor) { apply(h, rw.RemoveResponse, rw.SetResponse) }

func apply(h HeaderEditor, remove []string, set map[string]string) {
	for _, k := range remove {
		h.Del(k)
	}
	for k, v := range set {
		h.Set(k, v)
	}
}
