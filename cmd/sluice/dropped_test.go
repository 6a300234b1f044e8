package main

import (
	"net/netip"
	"slices"
	"testing"

	"sluice/config"
	"sluice/internal/pool"
)

func TestDroppedEdits(t *testing.T) {
	a, b, c := netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("127.0.0.1:2"), netip.MustParseAddrPort("127.0.0.1:3")
	file := func(bs ...config.Backend) []config.Backend { return bs }
	be := func(addr netip.AddrPort, w int) config.Backend { return config.Backend{Address: addr, Weight: w} }
	tests := []struct {
		name      string
		old, next []config.Backend
		live      []pool.BackendOptions
		want      []droppedEdit
	}{
		{"no edits", file(be(a, 1), be(b, 1)), file(be(a, 1), be(b, 1)),
			[]pool.BackendOptions{{Addr: a, Weight: 1}, {Addr: b, Weight: 1}}, nil},
		{"added at run time, not in the new file", file(be(a, 1)), file(be(a, 1)),
			[]pool.BackendOptions{{Addr: a, Weight: 1}, {Addr: c, Weight: 1}}, []droppedEdit{{c, "added"}}},
		{"added at run time, in the new file too", file(be(a, 1)), file(be(a, 1), be(c, 1)),
			[]pool.BackendOptions{{Addr: a, Weight: 1}, {Addr: c, Weight: 1}}, nil},
		{"removed at run time, back in the new file", file(be(a, 1), be(b, 1)), file(be(a, 1), be(b, 1)),
			[]pool.BackendOptions{{Addr: a, Weight: 1}}, []droppedEdit{{b, "removed"}}},
		{"removed at run time, gone from the new file too", file(be(a, 1), be(b, 1)), file(be(a, 1)),
			[]pool.BackendOptions{{Addr: a, Weight: 1}}, nil},
		{"weight changed, the new file sets another", file(be(a, 1), be(b, 1)), file(be(a, 2), be(b, 1)),
			[]pool.BackendOptions{{Addr: a, Weight: 5}, {Addr: b, Weight: 1}}, []droppedEdit{{a, "weight 5"}}},
		{"weight changed, the new file sets the same", file(be(a, 1)), file(be(a, 5)),
			[]pool.BackendOptions{{Addr: a, Weight: 5}}, nil},
		{"weight changed, backend gone from the new file", file(be(a, 1), be(b, 1)), file(be(b, 1)),
			[]pool.BackendOptions{{Addr: a, Weight: 5}, {Addr: b, Weight: 1}}, []droppedEdit{{a, "weight 5"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := pool.New(pool.Options{Name: "p", Backends: tt.live})
			if err != nil {
				t.Fatal(err)
			}
			got := droppedEdits(tt.old, tt.next, p.Backends())
			if !slices.Equal(got, tt.want) {
				t.Errorf("dropped %v, want %v", got, tt.want)
			}
		})
	}
}
