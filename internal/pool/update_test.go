package pool

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/internal/maglev"
)

// byAddr returns p's current backend at addr, or nil.
func byAddr(p *Pool, addr netip.AddrPort) *Backend {
	for _, b := range p.Backends() {
		if b.Addr == addr {
			return b
		}
	}
	return nil
}

// mustUpdate updates p and checks the changes it reports.
func mustUpdate(t *testing.T, p *Pool, o Options, want string) Changes {
	t.Helper()
	o.Name = p.Name()
	if o.Logger == nil {
		o.Logger = p.cfg.log
	}
	ch, err := p.Update(o)
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if ch.String() != want {
		t.Errorf("Update changes %q, want %q", ch, want)
	}
	return ch
}

// TestUpdateCarriesState checks what an Update keeps, adds and removes:
// each case builds a pool, brings it to some state, updates it with the
// backends the case gives, and checks the result.
func TestUpdateCarriesState(t *testing.T) {
	four := backends(1, 1, 1, 1) // a b c d: 10.0.0.1-4:80
	a, b, c, d := four[0], four[1], four[2], four[3]
	refused := errors.New("connect: connection refused")
	tests := []struct {
		name   string
		o      Options       // the pool as New builds it
		before func(p *Pool) // brings it to the state Update must carry
		next   Options       // the Update's options (Name is filled in)
		want   string        // Changes.String()
		check  func(*testing.T, *Pool)
	}{
		{
			name: "health verdicts kept, added backend awaits its check",
			o:    Options{Checked: true, Backends: []BackendOptions{a, b}},
			before: func(p *Pool) {
				p.SetHealth(p.Backends()[0], true, "check passed")
				p.SetHealth(p.Backends()[1], false, "connection refused")
			},
			next: Options{Checked: true, Backends: []BackendOptions{a, b, c}},
			want: "+10.0.0.3:80",
			check: func(t *testing.T, p *Pool) {
				wantStates(t, p, "up down down")
				if got := p.Unavailable(); got != "" {
					t.Errorf("Unavailable() = %q with a backend up", got)
				}
				// No backend is left waiting for a first check it had.
				if !byAddr(p, a.Addr).st.known || byAddr(p, c.Addr).st.known {
					t.Error("known flags not carried over")
				}
			},
		},
		{
			name: "ejection and failure count kept",
			o:    Options{PassiveFailures: 2, PassiveBackoff: time.Hour, Backends: []BackendOptions{a, b}},
			before: func(p *Pool) {
				p.Backends()[0].ReportFailure(refused)
				p.Backends()[0].ReportFailure(refused)
				p.Backends()[1].ReportFailure(refused)
			},
			next: Options{PassiveFailures: 2, PassiveBackoff: time.Hour, Backends: []BackendOptions{b, a}},
			want: "",
			check: func(t *testing.T, p *Pool) {
				wantStates(t, p, "up down") // now in the order b a
				byAddr(p, b.Addr).ReportFailure(refused)
				wantStates(t, p, "down down")
			},
		},
		{
			name: "live connections and the Backend itself kept",
			o:    Options{Balance: LeastConn, Backends: []BackendOptions{a, b}},
			before: func(p *Pool) {
				for range 3 {
					p.Backends()[0].Acquire()
				}
			},
			next: Options{Balance: LeastConn, Backends: []BackendOptions{a, b}},
			want: "",
			check: func(t *testing.T, p *Pool) {
				if n := byAddr(p, a.Addr).Active(); n != 3 {
					t.Errorf("a holds %d connections after Update, want 3", n)
				}
				if got := p.Pick(client, nil); got.Addr != b.Addr {
					t.Errorf("least_conn picked %s, want the idle b", got)
				}
			},
		},
		{
			name:   "admin state set at run time kept while the file's stays",
			o:      Options{Backends: []BackendOptions{a, b}},
			before: func(p *Pool) { p.SetAdmin(p.Backends()[0], Drain) },
			next:   Options{Backends: []BackendOptions{a, b}},
			want:   "",
			check:  func(t *testing.T, p *Pool) { wantStates(t, p, "draining up") },
		},
		{
			name:   "admin state changed in the file wins",
			o:      Options{Backends: []BackendOptions{a, b}},
			before: func(p *Pool) { p.SetAdmin(p.Backends()[0], Drain) },
			next:   Options{Backends: []BackendOptions{withAdmin(a, Maintenance), withAdmin(b, Drain)}},
			want:   "",
			check:  func(t *testing.T, p *Pool) { wantStates(t, p, "maintenance draining") },
		},
		{
			name: "weights and backup flags applied",
			o:    Options{Backends: []BackendOptions{a, b, c}},
			next: Options{Backends: []BackendOptions{withWeight(a, 3), b, withBackup(c)}},
			want: "",
			check: func(t *testing.T, p *Pool) {
				m := picks(p, 400)
				if m[byAddr(p, a.Addr)] != 300 || m[byAddr(p, b.Addr)] != 100 {
					t.Errorf("picks %v, want 300 for a (weight 3), 100 for b, none for the backup c", m)
				}
			},
		},
		{
			name: "removed backend drains",
			o:    Options{Checked: true, Backends: []BackendOptions{a, b}},
			before: func(p *Pool) {
				p.SetUp(p.Backends()[0], true)
				p.SetUp(p.Backends()[1], true)
				p.Backends()[0].Acquire()
			},
			next: Options{Checked: true, Backends: []BackendOptions{b}},
			want: "-10.0.0.1:80",
			check: func(t *testing.T, p *Pool) {
				old := p.gone[a.Addr]
				if old == nil || !old.Removed() || old.State() != StateDraining || old.Up() || old.Active() != 1 {
					t.Fatalf("removed a: %+v, want removed, draining, 1 live connection", old)
				}
				if m := picks(p, 100); m[old] != 0 {
					t.Errorf("removed backend picked %d times", m[old])
				}
				// Late reports on it are ignored, not panics.
				p.SetUp(old, true)
				p.SetAdmin(old, Enabled)
				old.ReportFailure(refused)
				if old.State() != StateDraining {
					t.Errorf("removed backend is %v after late reports", old.State())
				}
				old.Release()
			},
		},
		{
			name: "added backend in a serving pool ramps up",
			o:    Options{SlowStart: time.Hour, Backends: []BackendOptions{a}},
			next: Options{SlowStart: time.Hour, Backends: []BackendOptions{a, b}},
			want: "+10.0.0.2:80",
			check: func(t *testing.T, p *Pool) {
				if r := rampOf(p, byAddr(p, b.Addr)); r != 1 {
					t.Errorf("new backend at ramp step %d, want 1", r)
				}
			},
		},
		{
			name: "first backends of an empty pool start as New's",
			o:    Options{SlowStart: time.Hour},
			next: Options{SlowStart: time.Hour, Backends: []BackendOptions{a, b}},
			want: "+10.0.0.1:80 +10.0.0.2:80",
			check: func(t *testing.T, p *Pool) {
				wantStates(t, p, "up up")
				if r := rampOf(p, byAddr(p, b.Addr)); r != slowStartSteps {
					t.Errorf("first backend at ramp step %d, want full weight", r)
				}
			},
		},
		{
			// Issue 16: a backend discovered while the pool runs on its
			// backups must not stop them until it has been checked.
			name: "added unchecked backend leaves backups serving",
			o:    Options{Checked: true, Backends: []BackendOptions{a, withBackup(d)}},
			before: func(p *Pool) {
				p.SetUp(p.Backends()[0], false)
				p.SetUp(p.Backends()[1], true)
			},
			next: Options{Checked: true, Backends: []BackendOptions{a, c, withBackup(d)}},
			want: "+10.0.0.3:80",
			check: func(t *testing.T, p *Pool) {
				if got := p.Pick(client, nil); got == nil || got.Addr != d.Addr {
					t.Errorf("Pick = %v, want the backup %s", got, d.Addr)
				}
				p.SetUp(byAddr(p, c.Addr), true)
				if got := p.Pick(client, nil); got == nil || got.Addr != c.Addr {
					t.Errorf("Pick = %v once the new backend passed, want %s", got, c.Addr)
				}
			},
		},
		{
			name:  "checks dropped: backends up",
			o:     Options{Checked: true, Backends: []BackendOptions{a, b}},
			next:  Options{Backends: []BackendOptions{a, b}},
			want:  "",
			check: func(t *testing.T, p *Pool) { wantStates(t, p, "up up") },
		},
		{
			name:   "checks added: backends stay up until checked",
			o:      Options{Backends: []BackendOptions{a, b}},
			next:   Options{Checked: true, Backends: []BackendOptions{a, b}},
			want:   "",
			check:  func(t *testing.T, p *Pool) { wantStates(t, p, "up up") },
			before: func(p *Pool) {},
		},
		{
			name: "balance changed",
			o:    Options{Backends: []BackendOptions{a, b, c}},
			next: Options{Balance: Maglev, TableSize: 1009, Backends: []BackendOptions{a, b, c}},
			want: "",
			check: func(t *testing.T, p *Pool) {
				first := p.Pick(client, nil)
				for range 10 {
					if got := p.Pick(client, nil); got != first {
						t.Fatalf("maglev sent one client to %s and %s", first, got)
					}
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := newLogged(t, tt.o)
			if tt.before != nil {
				tt.before(p)
			}
			kept := map[netip.AddrPort]*Backend{}
			for _, b := range p.Backends() {
				kept[b.Addr] = b
			}
			mustUpdate(t, p, tt.next, tt.want)
			for _, b := range p.Backends() {
				if old := kept[b.Addr]; old != nil && old != b {
					t.Errorf("%s: Update replaced the Backend of a kept address", b)
				}
			}
			tt.check(t, p)
		})
	}
}

func withAdmin(b BackendOptions, a Admin) BackendOptions { b.Admin = a; return b }
func withWeight(b BackendOptions, w int) BackendOptions  { b.Weight = w; return b }
func withBackup(b BackendOptions) BackendOptions         { b.Backup = true; return b }

// wantStates checks the states of p's backends, in order.
func wantStates(t *testing.T, p *Pool, want string) {
	t.Helper()
	var got []string
	for _, b := range p.Backends() {
		got = append(got, b.State().String())
	}
	if strings.Join(got, " ") != want {
		t.Errorf("states %v, want %s", got, want)
	}
}

// TestUpdateRevives checks that an address removed and added back while
// its connections live gets its Backend back, counting them, with its
// health unknown again; and that one whose connections ended does not.
func TestUpdateRevives(t *testing.T) {
	bs := backends(1, 1)
	p, _ := newLogged(t, Options{Name: "x", Checked: true, Backends: bs})
	old := p.Backends()[0]
	p.SetUp(old, true)
	p.SetUp(p.Backends()[1], true)
	old.Acquire()
	mustUpdate(t, p, Options{Checked: true, Backends: bs[1:]}, "-10.0.0.1:80")
	mustUpdate(t, p, Options{Checked: true, Backends: bs}, "+10.0.0.1:80")
	back := byAddr(p, bs[0].Addr)
	if back != old || back.Removed() || back.Active() != 1 || back.State() != StateDown {
		t.Fatalf("revived: same %v, removed %v, active %d, %v; want same, false, 1, down until checked",
			back == old, back.Removed(), back.Active(), back.State())
	}
	p.SetUp(back, true)
	if r := rampOf(p, back); r != slowStartSteps {
		t.Errorf("ramp %d without slow start", r)
	}
	back.Release()
	mustUpdate(t, p, Options{Checked: true, Backends: bs[1:]}, "-10.0.0.1:80")
	mustUpdate(t, p, Options{Checked: true, Backends: bs}, "+10.0.0.1:80")
	if byAddr(p, bs[0].Addr) == old {
		t.Error("a removed backend without connections came back as the same Backend")
	}
}

// TestUpdateErrors checks that a bad Update changes nothing.
func TestUpdateErrors(t *testing.T) {
	bs := backends(1, 1, 1)
	tests := []struct {
		name string
		o    Options
		want string
		size bool
	}{
		{"other pool", Options{Name: "y", Backends: bs}, `update for another pool, "y"`, false},
		{"bad weight", Options{Name: "x", Backends: []BackendOptions{withWeight(bs[0], -2)}}, "weight -2", false},
		{"duplicate", Options{Name: "x", Backends: []BackendOptions{bs[0], bs[0]}}, "duplicates backend 0", false},
		{"table too small", Options{Name: "x", Balance: Maglev, TableSize: 2, Backends: bs}, "bad table size", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := newLogged(t, Options{Name: "x", Backends: bs[:2]})
			before := slices.Clone(p.Backends())
			sel := p.sel.Load()
			_, err := p.Update(tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Update error %v, want one mentioning %q", err, tt.want)
			}
			if got := errors.Is(err, maglev.ErrTableSize); got != tt.size {
				t.Errorf("errors.Is(err, maglev.ErrTableSize) = %v, want %v", got, tt.size)
			}
			if !slices.Equal(p.Backends(), before) || p.sel.Load() != sel {
				t.Error("a failed Update changed the pool")
			}
		})
	}
}

// TestUpdateCloseOnDown checks that turning on_down close on closes the
// connections of backends already down, once.
func TestUpdateCloseOnDown(t *testing.T) {
	bs := backends(1, 1)
	p, _ := newLogged(t, Options{Name: "x", Checked: true, Backends: bs})
	p.SetUp(p.Backends()[0], true)
	p.SetUp(p.Backends()[1], false)
	var closed []string
	p.OnDown(func(b *Backend) { closed = append(closed, b.String()) })
	mustUpdate(t, p, Options{Checked: true, CloseOnDown: true, Backends: bs}, "")
	mustUpdate(t, p, Options{Checked: true, CloseOnDown: true, Backends: bs}, "")
	if !slices.Equal(closed, []string{"10.0.0.2:80"}) || !p.Backends()[1].Closing() || p.Backends()[0].Closing() {
		t.Errorf("OnDown called for %v, Closing %v %v; want once for 10.0.0.2:80",
			closed, p.Backends()[0].Closing(), p.Backends()[1].Closing())
	}
}

// TestUpdateConcurrent picks, acquires and releases from several
// goroutines while another swaps the backend set back and forth and a
// third flaps a backend; run it with -race. Backends b and c stay in every
// set, up, so Pick never returns nil, and every count returns to zero.
func TestUpdateConcurrent(t *testing.T) {
	for _, bal := range allBalances {
		t.Run(bal.String(), func(t *testing.T) {
			bs := backends(1, 2, 3, 4) // a b c d
			sets := [][]BackendOptions{bs[:3], bs[1:], {withWeight(bs[2], 5), bs[1]}}
			p := mustNew(t, Options{Name: "x", Balance: bal, TableSize: 1009, Backends: sets[0]})
			runPool(t, p)
			log := p.cfg.log
			var seen sync.Map // every Backend picked
			var updates atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := 1; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					o := Options{Name: "x", Balance: bal, TableSize: 1009, SlowStart: time.Second,
						PassiveFailures: i%3 + 1, Backends: sets[i%len(sets)], Logger: log}
					if i%5 == 0 {
						o.Balance = allBalances[(int(bal)+1)%len(allBalances)]
					}
					if _, err := p.Update(o); err != nil {
						t.Error(err)
						return
					}
					updates.Add(1)
				}
			})
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if bd := byAddr(p, bs[3].Addr); bd != nil {
						p.SetUp(bd, i%2 == 0)
						bd.ReportFailure(errors.New("refused"))
					}
				}
			})
			var pickers sync.WaitGroup
			for g := range 4 {
				pickers.Go(func() {
					r := rand.New(rand.NewPCG(uint64(g), 17))
					// Until some Updates have run among the picks.
					for i := 0; i < 3000 || updates.Load() < 50; i++ {
						b := p.Pick(randomClient(r), nil)
						if b == nil {
							t.Error("Pick returned nil with two backends always up")
							return
						}
						seen.Store(b, true)
						b.Acquire()
						_ = p.Retries()
						b.ReportSuccess()
						b.Release()
					}
				})
			}
			pickers.Wait()
			close(stop)
			wg.Wait()
			seen.Range(func(k, _ any) bool {
				if b := k.(*Backend); b.Active() != 0 {
					t.Errorf("%s: %d live connections left", b, b.Active())
				}
				return true
			})
		})
	}
}

// TestUpdatePickAllocs checks that Pick stays allocation-free on a pool
// rebuilt by Update.
func TestUpdatePickAllocs(t *testing.T) {
	for _, bal := range allBalances {
		p := mustNew(t, Options{Name: "x", Balance: bal, Backends: backends(1, 2)})
		mustUpdate(t, p, Options{Balance: bal, Backends: backends(1, 2, 3)}, "+10.0.0.3:80")
		if n := testing.AllocsPerRun(100, func() { p.Pick(client, nil) }); n != 0 {
			t.Errorf("%v: Pick allocates %v times after Update", bal, n)
		}
	}
}
