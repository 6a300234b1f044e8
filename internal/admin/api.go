package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/netip"
	"time"

	"sluice/internal/pool"
	"sluice/l4"
	"sluice/l4/udp"
	"sluice/l7"
)

// StatusJSON is GET /api/v1/status: everything the status page shows.
type StatusJSON struct {
	Version   string         `json:"version"`
	Started   time.Time      `json:"started"`
	Now       time.Time      `json:"now"`
	Listeners []ListenerJSON `json:"listeners"`
	Pools     []PoolJSON     `json:"pools"`
}

// ListenerJSON is one listener with its counts so far.
type ListenerJSON struct {
	Name     string `json:"name"`
	Protocol string `json:"protocol"`
	Bind     string `json:"bind"`
	Pool     string `json:"pool"`
	// Ended counts connections (TCP) or sessions (UDP) that ended, by
	// their log line's end.
	Ended map[string]uint64 `json:"ended"`
	// ReceivedBytes and SentBytes count what connections or sessions
	// that ended received from and sent to their clients.
	ReceivedBytes uint64 `json:"received_bytes"`
	SentBytes     uint64 `json:"sent_bytes"`
	Retries       uint64 `json:"retries,omitempty"`
	// Live is a TCP listener's live connections (accepted, not yet
	// ended) or an HTTP listener's requests in flight, from the proxies'
	// counters; absent without them.
	Live *int64 `json:"live,omitempty"`
	// UDP listeners only: live sessions and datagram counters.
	Sessions  *int64            `json:"sessions,omitempty"`
	Datagrams map[string]uint64 `json:"datagrams,omitempty"`
	Dropped   map[string]uint64 `json:"dropped,omitempty"`
	Evicted   *uint64           `json:"evicted,omitempty"`
}

// PoolJSON is one pool and its backends.
type PoolJSON struct {
	Name     string        `json:"name"`
	Balance  string        `json:"balance"`
	HashKey  string        `json:"hash_key,omitempty"`
	Backends []BackendJSON `json:"backends"`
	// Unavailable says why no backend is up; "" while one is.
	Unavailable string `json:"unavailable,omitempty"`
}

// BackendJSON is one backend's state and counts.
type BackendJSON struct {
	Address string `json:"address"`
	// State is up, down, draining or maintenance.
	State  string `json:"state"`
	Weight int    `json:"weight"`
	Backup bool   `json:"backup,omitempty"`
	// Active is what its pool counts as live: TCP connections
	// (connecting too), UDP sessions and HTTP requests in flight.
	Active int64 `json:"active"`
	// Live is its established TCP connections and UDP sessions, from the
	// proxies' counters, over every listener of its pool.
	Live int64 `json:"live"`
	// Ended counts its connections and sessions that ended, by end.
	Ended map[string]uint64 `json:"ended"`
	// LastCheck is its last active health check; absent if none yet.
	LastCheck *Check `json:"last_check,omitempty"`
}

// StateRequest is the body of PUT .../backends/{backend}/state.
type StateRequest struct {
	// State is "enabled", "drain" or "maintenance", as in the
	// configuration file.
	State string `json:"state"`
}

// ErrorJSON is the body of every error response.
type ErrorJSON struct {
	Error string `json:"error"`
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st := StatusJSON{Version: s.o.Version, Started: s.started, Now: time.Now(), Listeners: s.listenerList(), Pools: []PoolJSON{}}
	for _, p := range s.o.Pools {
		st.Pools = append(st.Pools, s.poolJSON(p))
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) listeners(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.listenerList())
}

func (s *Server) poolList(w http.ResponseWriter, r *http.Request) {
	out := []PoolJSON{}
	for _, p := range s.o.Pools {
		out = append(out, s.poolJSON(p))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) pool(w http.ResponseWriter, r *http.Request) {
	p, ok := s.findPool(w, r)
	if ok {
		writeJSON(w, http.StatusOK, s.poolJSON(p))
	}
}

func (s *Server) backend(w http.ResponseWriter, r *http.Request) {
	p, b, ok := s.findBackend(w, r)
	if ok {
		writeJSON(w, http.StatusOK, s.backendJSON(p, b, s.endsByBackend()))
	}
}

// readJSON reads r's body into v. It must be JSON (Content-Type:
// application/json): a browser on another site cannot send that without
// a CORS preflight, which this server never allows, so a page elsewhere
// cannot drain a backend through a token-less admin listener.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, errors.New("admin: the body must be JSON (Content-Type: application/json)"))
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("admin: reading the request: %w", err))
		return false
	}
	return true
}

// setState sets a backend's administrative state.
func (s *Server) setState(w http.ResponseWriter, r *http.Request) {
	p, b, ok := s.findBackend(w, r)
	if !ok {
		return
	}
	var req StateRequest
	if !readJSON(w, r, &req) {
		return
	}
	var a pool.Admin
	if err := a.UnmarshalText([]byte(req.State)); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("admin: %w", err))
		return
	}
	p.SetAdmin(b, a)
	writeJSON(w, http.StatusOK, s.backendJSON(p, b, s.endsByBackend()))
}

// WeightRequest is the body of PUT .../backends/{backend}/weight.
type WeightRequest struct {
	Weight int `json:"weight"`
}

// AddRequest is the body of POST /api/v1/pools/{pool}/backends.
type AddRequest struct {
	Address string `json:"address"`
	// Weight is 1 to 256; 0 means 1.
	Weight int  `json:"weight,omitempty"`
	Backup bool `json:"backup,omitempty"`
}

func (s *Server) setWeight(w http.ResponseWriter, r *http.Request) {
	p, b, ok := s.findBackend(w, r)
	var req WeightRequest
	if !ok || !s.editing(w) || !readJSON(w, r, &req) {
		return
	}
	s.edited(w, p, b.Addr, s.o.Editor.SetWeight(p.Name(), b.Addr, req.Weight), http.StatusOK)
}

func (s *Server) addBackend(w http.ResponseWriter, r *http.Request) {
	p, ok := s.findPool(w, r)
	var req AddRequest
	if !ok || !s.editing(w) || !readJSON(w, r, &req) {
		return
	}
	addr, err := netip.ParseAddrPort(req.Address)
	if err != nil || addr.Port() == 0 {
		writeError(w, http.StatusBadRequest, fmt.Errorf("%w: address %q: want IP:port, such as 10.0.0.3:5432", ErrInvalid, req.Address))
		return
	}
	if req.Weight < 0 || req.Weight > pool.MaxWeight {
		writeError(w, http.StatusBadRequest, fmt.Errorf("%w: weight %d, want 1 to %d", ErrInvalid, req.Weight, pool.MaxWeight))
		return
	}
	err = s.o.Editor.AddBackend(p.Name(), pool.BackendOptions{Addr: addr, Weight: req.Weight, Backup: req.Backup})
	s.edited(w, p, addr, err, http.StatusCreated)
}

func (s *Server) removeBackend(w http.ResponseWriter, r *http.Request) {
	p, b, ok := s.findBackend(w, r)
	if !ok || !s.editing(w) {
		return
	}
	// The answer shows the backend as it leaves: draining, with the
	// connections it still has.
	if err := s.o.Editor.RemoveBackend(p.Name(), b.Addr); err != nil {
		s.edited(w, p, b.Addr, err, http.StatusOK)
		return
	}
	writeJSON(w, http.StatusOK, s.backendJSON(p, b, s.endsByBackend()))
}

// editing answers 501 if the server has no Editor.
func (s *Server) editing(w http.ResponseWriter) bool {
	if s.o.Editor == nil {
		writeError(w, http.StatusNotImplemented, errors.New("admin: this sluice cannot change backends at run time"))
	}
	return s.o.Editor != nil
}

// edited answers an Editor's call: the error's status, or the backend at
// addr as it now is.
func (s *Server) edited(w http.ResponseWriter, p Pool, addr netip.AddrPort, err error, code int) {
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, err)
		return
	case errors.Is(err, ErrConflict):
		writeError(w, http.StatusConflict, err)
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, err)
		return
	}
	for _, b := range p.Backends() {
		if b.Addr == addr {
			writeJSON(w, code, s.backendJSON(p, b, s.endsByBackend()))
			return
		}
	}
	writeError(w, http.StatusInternalServerError, fmt.Errorf("admin: backend %s not in pool %q after the change", addr, p.Name()))
}

func (s *Server) explain(w http.ResponseWriter, r *http.Request) {
	p, ok := s.findPool(w, r)
	if !ok {
		return
	}
	client, err := ParseClient(r.URL.Query().Get("client"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, http.StatusOK, Explain(p, client, s.o.Metrics.LastCheck))
}

func (s *Server) findPool(w http.ResponseWriter, r *http.Request) (Pool, bool) {
	p, ok := s.pools[r.PathValue("pool")]
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("admin: no pool %q", r.PathValue("pool")))
	}
	return p, ok
}

// findBackend finds the backend named by its address in r's path.
func (s *Server) findBackend(w http.ResponseWriter, r *http.Request) (Pool, *pool.Backend, bool) {
	p, ok := s.findPool(w, r)
	if !ok {
		return p, nil, false
	}
	name := r.PathValue("backend")
	addr, err := netip.ParseAddrPort(name)
	if err == nil {
		for _, b := range p.Backends() {
			if b.Addr == addr {
				return p, b, true
			}
		}
	}
	writeError(w, http.StatusNotFound, fmt.Errorf("admin: pool %q has no backend %q", p.Name(), name))
	return p, nil, false
}

func (s *Server) listenerList() []ListenerJSON {
	ends := s.o.Metrics.snapshot()
	out := []ListenerJSON{}
	for _, l := range s.o.Listeners {
		lj := ListenerJSON{Name: l.Name, Protocol: l.Protocol, Bind: l.Bind, Pool: l.Pool, Ended: map[string]uint64{}}
		for k, c := range ends {
			if k.listener != l.Name || k.kind != kindOf(l.Protocol) {
				continue
			}
			lj.Ended[k.end] += c.ends
			lj.ReceivedBytes += c.in
			lj.SentBytes += c.out
			lj.Retries += c.retries
		}
		lj.Live = s.o.Metrics.listenerLive(l.Name, kindOf(l.Protocol))
		if l.UDP != nil {
			st := l.UDP()
			lj.Sessions, lj.Evicted = &st.Sessions, &st.Evicted
			lj.Datagrams, lj.Dropped = countMap(udpDirections(st)), countMap(udpDrops(st))
		}
		out = append(out, lj)
	}
	return out
}

func countMap(cs []namedCount) map[string]uint64 {
	m := make(map[string]uint64, len(cs))
	for _, c := range cs {
		m[c.name] = c.n
	}
	return m
}

// endsByBackend sums the ended counts of every listener by pool, backend
// address and end: the same address may be a backend of several pools.
func (s *Server) endsByBackend() map[poolBackend]map[string]uint64 {
	out := map[poolBackend]map[string]uint64{}
	for k, c := range s.o.Metrics.snapshot() {
		pb := poolBackend{s.o.Metrics.pools.Load().of(k), k.backend}
		m := out[pb]
		if m == nil {
			m = map[string]uint64{}
			out[pb] = m
		}
		m[k.end] += c.ends
	}
	return out
}

type poolBackend struct{ pool, backend string }

func (s *Server) poolJSON(p Pool) PoolJSON {
	pj := PoolJSON{Name: p.Name(), Balance: p.Balance.String(), Unavailable: p.Unavailable(), Backends: []BackendJSON{}}
	if p.Balance == pool.Maglev {
		pj.HashKey = p.HashKey.String()
	}
	ends := s.endsByBackend()
	for _, b := range p.Backends() {
		pj.Backends = append(pj.Backends, s.backendJSON(p, b, ends))
	}
	return pj
}

func (s *Server) backendJSON(p Pool, b *pool.Backend, ends map[poolBackend]map[string]uint64) BackendJSON {
	e := ends[poolBackend{p.Name(), b.String()}]
	if e == nil {
		e = map[string]uint64{}
	}
	return BackendJSON{
		Address: b.String(), State: b.State().String(), Weight: backendWeight(b), Backup: backendBackup(b),
		Active: b.Active(), Live: s.o.Metrics.live(p.Name(), b.Addr), Ended: e, LastCheck: s.o.Metrics.LastCheck(b),
	}
}

// counts is one key's counters, read.
type counts struct{ ends, in, out, retries uint64 }

// snapshot reads every listener's counters into series by key. A
// backend's bytes and retries go with one of its ends' keys: they are
// summed per backend, never per end.
func (m *Metrics) snapshot() map[endKey]counts {
	out := map[endKey]counts{}
	add := func(k endKey, c counts) {
		o := out[k]
		out[k] = counts{o.ends + c.ends, o.in + c.in, o.out + c.out, o.retries + c.retries}
	}
	m.tcp.each(func(name string, c *l4.Counters) {
		c.Backends(func(addr netip.AddrPort, b *l4.BackendCounters) {
			in, out := b.Bytes()
			rest := counts{in: in, out: out, retries: b.Retries()}
			b.Ends(func(e l4.End, n uint64) {
				add(endKey{kind: kindTCP, listener: name, backend: backendLabel(addr), end: e.String()}, counts{ends: n}.with(rest))
				rest = counts{}
			})
		})
	})
	m.udp.each(func(name string, c *udp.Counters) {
		c.Backends(func(addr netip.AddrPort, b *udp.BackendCounters) {
			in, out := b.Bytes()
			rest := counts{in: in, out: out}
			b.Ends(func(e udp.End, n uint64) {
				add(endKey{kind: kindUDP, listener: name, backend: backendLabel(addr), end: e.String()}, counts{ends: n}.with(rest))
				rest = counts{}
			})
		})
	})
	m.http.each(func(name string, c *l7.Counters) {
		c.Requests(func(k l7.RequestKey, n, in, out, retries uint64) {
			add(endKey{kind: kindHTTP, listener: name, backend: backendLabel(k.Backend), end: k.End.String(),
				route: k.Route, status: int64(k.Status)}, counts{n, in, out, retries})
		})
	})
	return out
}

// listenerLive returns listener name's live connections (TCP) or
// requests in flight (HTTP), nil if it has no counters (or is UDP: its
// Stats say).
func (m *Metrics) listenerLive(name string, k kind) *int64 {
	var n int64
	switch k {
	case kindTCP:
		c, ok := m.tcp.lookup(name)
		if !ok {
			return nil
		}
		n = c.Live()
	case kindHTTP:
		c, ok := m.http.lookup(name)
		if !ok {
			return nil
		}
		n = c.Current()
	default:
		return nil
	}
	return &n
}

// live returns the established TCP connections and UDP sessions to addr
// over the listeners of pool name.
func (m *Metrics) live(name string, addr netip.AddrPort) int64 {
	names := m.pools.Load()
	var n int64
	m.tcp.each(func(l string, c *l4.Counters) {
		if names.Listener[l] == name {
			c.Backends(func(a netip.AddrPort, b *l4.BackendCounters) {
				if a == addr {
					n += b.Live()
				}
			})
		}
	})
	m.udp.each(func(l string, c *udp.Counters) {
		if names.Listener[l] == name {
			c.Backends(func(a netip.AddrPort, b *udp.BackendCounters) {
				if a == addr {
					n += b.Live()
				}
			})
		}
	})
	return n
}

// with returns c plus the bytes and retries of o.
func (c counts) with(o counts) counts {
	c.in, c.out, c.retries = c.in+o.in, c.out+o.out, c.retries+o.retries
	return c
}

// backendLabel is a backend's label: its address, "" for none.
func backendLabel(addr netip.AddrPort) string {
	if !addr.IsValid() {
		return ""
	}
	return addr.String()
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, ErrorJSON{Error: err.Error()})
}
