package admin

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	"sluice/internal/pool"
)

// ExplainJSON is GET /api/v1/pools/{pool}/explain?client=ADDR: which
// backend a client would get from a pool now, and why. `sluice explain`
// prints the same from the configuration file alone.
type ExplainJSON struct {
	Pool    string `json:"pool"`
	Client  string `json:"client"`
	Balance string `json:"balance"`
	HashKey string `json:"hash_key,omitempty"`
	// Backend is the backend the client's next connection would get;
	// "" when no backend is up.
	Backend string `json:"backend,omitempty"`
	// Deterministic says the answer depends only on the client and the
	// backends' states (Maglev); otherwise on the order of connections
	// (round robin) or the loads at the time (least_conn, random).
	Deterministic bool `json:"deterministic"`
	// Hash, Slot and TableSize are Maglev's.
	Hash      string `json:"hash,omitempty"`
	Slot      *int   `json:"slot,omitempty"`
	TableSize int    `json:"table_size,omitempty"`
	// Candidates are the backends chosen among; Backups says they are
	// the pool's backups, standing in while no other backend is up.
	Candidates []CandidateJSON `json:"candidates"`
	Backups    bool            `json:"backups,omitempty"`
	// Excluded are the pool's other backends and why they were not
	// candidates.
	Excluded []ExcludedJSON `json:"excluded"`
	// Why says it in a sentence.
	Why string `json:"why"`
}

// CandidateJSON is a backend the choice was made among.
type CandidateJSON struct {
	Address string `json:"address"`
	// Weight is the weight the choice used (scaled during a slow start).
	Weight int `json:"weight"`
	// Slots is how many Maglev slots it owns.
	Slots int `json:"slots,omitempty"`
	// Active is its live connections and sessions.
	Active int64 `json:"active"`
}

// ExcludedJSON is a backend that was not a candidate.
type ExcludedJSON struct {
	Address string `json:"address"`
	State   string `json:"state"`
	Why     string `json:"why"`
}

// ParseClient parses a client address for explain: "IP:PORT", or a bare
// IP (port 0), which is enough for pools that hash the IP alone.
func ParseClient(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, 0), nil
	}
	return netip.AddrPort{}, fmt.Errorf("admin: client %q: want IP:port, such as 10.1.2.3:4567 or [2001:db8::1]:4567, or an IP", s)
}

// Explain says which backend p would give client now, and why. lastCheck,
// if not nil, gives a backend's last health check for the reasons of the
// excluded ones.
func Explain(p Pool, client netip.AddrPort, lastCheck func(*pool.Backend) *Check) ExplainJSON {
	e := p.Explain(client)
	out := ExplainJSON{Pool: p.Name(), Client: client.String(), Balance: e.Balance.String(),
		Deterministic: e.Deterministic, Backups: e.Backups, Candidates: []CandidateJSON{}, Excluded: []ExcludedJSON{}}
	if e.Balance == pool.Maglev {
		out.HashKey = e.HashKey.String()
	}
	for i, b := range e.Candidates {
		c := CandidateJSON{Address: b.String(), Weight: e.Weights[i], Active: b.Active()}
		if i < len(e.SlotShare) {
			c.Slots = e.SlotShare[i]
		}
		out.Candidates = append(out.Candidates, c)
	}
	for _, b := range p.Backends() {
		if !slices.Contains(e.Candidates, b) {
			out.Excluded = append(out.Excluded, excluded(b, e.Backups, lastCheck))
		}
	}
	if e.Backend == nil {
		out.Why = "no backend is up: " + e.None
		return out
	}
	out.Backend = e.Backend.String()
	if e.Slot >= 0 {
		slot := e.Slot
		out.Slot, out.Hash, out.TableSize = &slot, fmt.Sprintf("%#016x", e.Hash), e.TableSize
	}
	out.Why = why(e, client)
	return out
}

// why says in a sentence how e.Backend was chosen.
func why(e pool.Explanation, client netip.AddrPort) string {
	i := slices.Index(e.Candidates, e.Backend)
	total := 0
	for _, w := range e.Weights {
		total += w
	}
	among := "1 candidate"
	if len(e.Candidates) > 1 {
		among = fmt.Sprintf("%d candidates", len(e.Candidates))
	}
	if e.Backups {
		among += ", the pool's backups since no other backend is up"
	}
	switch e.Balance {
	case pool.Maglev:
		key := client.Addr().String()
		if e.HashKey == pool.ClientIPPort {
			key = client.String()
		}
		return fmt.Sprintf("maglev hashes %s %s to slot %d of %d, which %s owns (%d slots, weight %d of %d; %s)",
			e.HashKey, key, e.Slot, e.TableSize, e.Backend, e.SlotShare[i], e.Weights[i], total, among)
	case pool.RoundRobin:
		return fmt.Sprintf("round robin: %s is next in the weighted sequence (weight %d of %d; %s); which backend a client gets depends on the order connections arrive, not on the client",
			e.Backend, e.Weights[i], total, among)
	case pool.LeastConn:
		s := fmt.Sprintf("least_conn: %s has the fewest live connections per unit of weight now (%d at weight %d; %s)",
			e.Backend, e.Backend.Active(), e.Weights[i], among)
		if e.Ties > 1 {
			s += fmt.Sprintf("; %d backends tie and one of them is taken at random", e.Ties)
		}
		return s + "; the answer depends on the loads when the client connects, not on the client"
	}
	return fmt.Sprintf("random: two backends are drawn in proportion to weight and the less loaded one taken (%s); %s is one such draw, not determined by the client",
		among, e.Backend)
}

// excluded says why b was not a candidate.
func excluded(b *pool.Backend, backups bool, lastCheck func(*pool.Backend) *Check) ExcludedJSON {
	st := b.State()
	x := ExcludedJSON{Address: b.String(), State: st.String()}
	switch st {
	case pool.StateUp:
		if backendBackup(b) {
			x.Why = "backup: used only while no other backend is up"
		} else if backups {
			x.Why = "up since the choice was made"
		} else {
			x.Why = "up, but the pool is using its backups"
		}
	case pool.StateDraining:
		x.Why = "draining: takes no new connections (state = \"drain\")"
	case pool.StateMaintenance:
		x.Why = "in maintenance: takes no new connections"
	default:
		var c *Check
		if lastCheck != nil {
			c = lastCheck(b)
		}
		switch {
		case c != nil && !c.Passed:
			x.Why = "down: last check failed: " + c.Error
		case c != nil:
			x.Why = "down: its checks have not passed rise times in a row, or it was ejected after connection failures"
		default:
			x.Why = "down: not checked yet, or ejected after connection failures"
		}
	}
	return x
}

// WriteText writes e for a terminal: the answer, then what it was chosen
// among and what was left out.
func (e ExplainJSON) WriteText(w io.Writer) {
	algo := e.Balance
	if e.HashKey != "" {
		algo += " on " + e.HashKey
	}
	backend := e.Backend
	if backend == "" {
		backend = "no backend"
	}
	fmt.Fprintf(w, "pool %s (%s): client %s -> %s\n", e.Pool, algo, e.Client, backend)
	fmt.Fprintf(w, "  why: %s\n", e.Why)
	if e.Slot != nil {
		fmt.Fprintf(w, "  hash %s, slot %d of %d\n", e.Hash, *e.Slot, e.TableSize)
	}
	for _, c := range e.Candidates {
		var extra []string
		if c.Slots > 0 {
			extra = append(extra, fmt.Sprintf("%d slots", c.Slots))
		}
		if !e.Deterministic {
			extra = append(extra, fmt.Sprintf("%d active", c.Active))
		}
		fmt.Fprintf(w, "  candidate %s weight %d%s\n", c.Address, c.Weight, list(extra))
	}
	for _, x := range e.Excluded {
		fmt.Fprintf(w, "  excluded  %s %s: %s\n", x.Address, x.State, x.Why)
	}
}

func list(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return ", " + strings.Join(s, ", ")
}
