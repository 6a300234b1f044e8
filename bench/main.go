// Command bench compares sluice with HAProxy and nginx, and with no proxy
// at all, on the same machine in the same run, and writes the table and
// chart under bench/results.
//
//	go run ./bench            # make bench: 3 interleaved repetitions
//	go run ./bench -quick     # one short repetition
//	go run ./bench -pin -systems direct,sluice -scenarios tcp1,latency
//	go run ./bench -quick -pin -only pgbench,newconn
//
// The backends and the load generators run in this process; each proxy
// runs as its own process from a config written next to the results.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// flags are the command line, before they are turned into settings.
type flags struct {
	quick     bool
	pin       bool
	reps      int
	dur       time.Duration
	idle      int
	settle    time.Duration
	quiet     time.Duration
	cores     int
	systems   string
	scenarios string
	out       string
	sluice    string
	nice      int
}

func parseFlags(args []string) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.BoolVar(&f.quick, "quick", false, "one short repetition (make bench-quick)")
	fs.BoolVar(&f.pin, "pin", false, "pin the proxies to CPU 0 and the load and backends to the other CPUs")
	fs.IntVar(&f.reps, "reps", 0, "repetitions (0: 3, or 1 with -quick)")
	fs.DurationVar(&f.dur, "dur", 0, "measured window of each timed scenario (0: 3s, or 1s with -quick)")
	fs.IntVar(&f.idle, "idle", 5000, "connections held by the idle scenario")
	// Idle means idle for a while: proxies may give memory back some
	// time after traffic stops (sluice parks a connection silent for a
	// second and trims its heap every few seconds), and a real idle
	// connection is silent for minutes. The peers do not change with it.
	fs.DurationVar(&f.quiet, "quiet", 2*time.Minute, "how long the run may wait in all for other processes to quieten down before each scenario (-quick: at most 20s)")
	fs.DurationVar(&f.settle, "settle", 5*time.Second, "how long the idle scenario holds its connections silent before reading memory")
	fs.IntVar(&f.cores, "cores", 1, "proxy threads: HAProxy nbthread, nginx worker_processes, sluice GOMAXPROCS")
	fs.StringVar(&f.systems, "systems", "all", "comma-separated: direct,sluice,haproxy,nginx")
	scenUsage := "comma-separated: all, or scenarios (" + scenarioKeys() + ") and groups (" + groupKeys() + ")"
	fs.StringVar(&f.scenarios, "scenarios", "all", scenUsage)
	fs.StringVar(&f.scenarios, "only", "all", "the same as -scenarios")
	fs.StringVar(&f.out, "out", "", "results directory (default: bench/results of the module)")
	fs.StringVar(&f.sluice, "sluice", "", "a sluice binary to use instead of building ./cmd/sluice")
	fs.IntVar(&f.nice, "nice", -10, "nice value for the bench and the proxies, so other work on a shared machine disturbs them less (0: leave it)")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("parsing flags: unexpected argument %q", fs.Arg(0))
	}
	return f, nil
}

// settings turns flags into settings, with the -quick defaults.
func (f flags) settings() (settings, error) {
	s := settings{reps: 3, warm: 500 * time.Millisecond, dur: 3 * time.Second,
		idleConns: f.idle, settle: f.settle, cores: f.cores, quietBudget: f.quiet}
	if f.quick {
		s.reps, s.warm, s.dur = 1, 300*time.Millisecond, time.Second
		s.quietBudget = min(s.quietBudget, 20*time.Second)
	}
	if f.reps > 0 {
		s.reps = f.reps
	}
	if f.dur > 0 {
		s.dur = f.dur
	}
	if s.cores < 1 || s.idleConns < 1 {
		return s, errors.New("parsing flags: -cores and -idle must be at least 1")
	}
	if f.pin {
		n := runtime.NumCPU()
		if s.cores >= n {
			return s, fmt.Errorf("parsing flags: -pin needs a CPU left for the load: -cores %d of %d", s.cores, n)
		}
		s.proxyCPUs = fmt.Sprintf("0-%d", s.cores-1)
	}
	return s, nil
}

// run is the whole bench: prepare, measure, report.
func run(ctx context.Context, args []string) error {
	f, err := parseFlags(args)
	if err != nil {
		return err
	}
	set, err := f.settings()
	if err != nil {
		return err
	}
	systems, err := pickSystems(strings.Split(f.systems, ","))
	if err != nil {
		return err
	}
	scens, err := pickScenarios(strings.Split(f.scenarios, ","))
	if err != nil {
		return err
	}
	if set.tools, err = ensureClients(progress, scens); err != nil {
		return err
	}
	if err := f.tune(set); err != nil {
		return err
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		return fmt.Errorf("creating run directory: %w", err)
	}
	defer os.RemoveAll(dir)
	env, err := prepare(root, dir, f.sluice, systems)
	if err != nil {
		return err
	}
	start := time.Now()
	m0, s0, _ := cpuTotals()
	res, cfgs, err := measureAll(ctx, env, set, scens)
	if err != nil {
		return err
	}
	others := math.NaN()
	if m1, s1, err := cpuTotals(); err == nil {
		// What the rest of the machine kept busy, in CPUs: on a shared
		// machine this says how far to trust the figures.
		others = max(float64((m1-m0)-(s1-s0)), 0) / clockTicks / time.Since(start).Seconds()
	}
	progress("measured in %v; other processes kept %.2f CPUs busy on average", time.Since(start).Round(time.Second), others)
	out := f.out
	if out == "" {
		out = root + "/bench/results"
	}
	rep := &report{res: res, set: set, pinned: f.pin, nice: f.nice, others: others, args: args, start: start,
		versions: versions(root, env.bins, set.tools, f.sluice != ""), configs: cfgs}
	return rep.write(out)
}

// tune raises the fd limit, the priority (f.nice is cleared when that is
// not allowed) and pins this process when asked.
func (f *flags) tune(set settings) error {
	if _, err := raiseFDLimit(); err != nil {
		return err
	}
	if f.nice != 0 {
		if err := reniceSelf(f.nice); err != nil {
			progress("warning: running at the inherited priority: %v", err)
			f.nice = 0
		}
	}
	if !f.pin {
		return nil
	}
	var load []int
	for c := set.cores; c < runtime.NumCPU(); c++ {
		load = append(load, c)
	}
	if err := pinSelf(load); err != nil {
		return err
	}
	progress("pinned: proxies on CPU %s, load and backends on CPU %v", set.proxyCPUs, load)
	return nil
}

// env is what the run prepared: the systems that can run and their
// binaries.
type env struct {
	dir     string
	systems []*system
	bins    map[string]string
}

// prepare installs the peers, builds sluice and drops systems that cannot
// run, saying why.
func prepare(root, dir, sluiceBin string, systems []*system) (*env, error) {
	bins, err := ensurePeers(progress, systems)
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, bins: bins}
	for _, s := range systems {
		if s == sluiceSystem {
			if sluiceBin == "" {
				progress("building sluice")
				sluiceBin, err = buildSluice(root, dir)
			}
			if errors.Is(err, errNoSluice) {
				progress("skipping sluice: %v", err)
				continue
			}
			if err != nil {
				return nil, err
			}
			bins[s.key] = sluiceBin
		}
		e.systems = append(e.systems, s)
	}
	if len(e.systems) == 0 {
		return nil, errors.New("preparing: no system left to measure")
	}
	return e, nil
}

// progress prints one line of progress on stderr.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
