package main

import (
	"fmt"
	"net/netip"
	"slices"

	"sluice/config"
	"sluice/internal/pool"
)

// droppedEdit is a change made to a pool at run time (through the admin
// API) that a reload undoes, because the file it reads knows nothing of it.
type droppedEdit struct {
	backend netip.AddrPort
	what    string // "added", "removed" or "weight N"
}

// droppedEdits compares a pool's live backends with the file it was built
// from (old) and the file a reload puts in force (next): a backend added at
// run time that next does not have, one removed at run time that next
// brings back, and a weight changed at run time that next sets otherwise,
// are run-time changes the reload drops. A change that next makes too is
// not dropped.
func droppedEdits(old, next []config.Backend, live []*pool.Backend) []droppedEdit {
	find := func(bs []config.Backend, a netip.AddrPort) int {
		return slices.IndexFunc(bs, func(b config.Backend) bool { return b.Address == a })
	}
	var out []droppedEdit
	for _, b := range live {
		i, j := find(old, b.Addr), find(next, b.Addr)
		switch {
		case i < 0 && j < 0:
			out = append(out, droppedEdit{b.Addr, "added"})
		case i >= 0 && b.Weight() != old[i].Weight && (j < 0 || next[j].Weight != b.Weight()):
			out = append(out, droppedEdit{b.Addr, fmt.Sprintf("weight %d", b.Weight())})
		}
	}
	for _, b := range old {
		isLive := slices.ContainsFunc(live, func(l *pool.Backend) bool { return l.Addr == b.Address })
		if !isLive && find(next, b.Address) >= 0 {
			out = append(out, droppedEdit{b.Address, "removed"})
		}
	}
	return out
}
