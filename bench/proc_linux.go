package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat.
// Linux has reported 100 to user space on every architecture since 2.6.
const clockTicks = 100

// procUsage is what the bench reads about a proxy's process tree at one
// instant: nginx runs a master and workers, so every figure is summed over
// the process and all its descendants.
type procUsage struct {
	cpuTicks int64 // utime+stime, in clockTicks
	rssKB    int64 // VmRSS
	anonKB   int64 // RssAnon: the part of VmRSS that is not page cache
	fds      int64 // entries in /proc/PID/fd
}

// readUsage sums the usage of pid and its descendants.
func readUsage(pid int) (procUsage, error) {
	var u procUsage
	pids, err := processTree(pid)
	if err != nil {
		return u, err
	}
	for _, p := range pids {
		ticks, err := cpuTicks(p)
		if err != nil {
			return u, err
		}
		rss, err := statusKB(p, "VmRSS")
		if err != nil {
			return u, err
		}
		anon, err := statusKB(p, "RssAnon")
		if err != nil {
			return u, err
		}
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p))
		if err != nil {
			return u, fmt.Errorf("counting fds of %d: %w", p, err)
		}
		u.cpuTicks += ticks
		u.rssKB += rss
		u.anonKB += anon
		u.fds += int64(len(fds))
	}
	return u, nil
}

// processTree returns pid followed by all its living descendants, found by
// the parent field of every /proc/N/stat (the children files need
// CONFIG_PROC_CHILDREN, which not every kernel has).
func processTree(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	parent := map[int]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fields, err := statFields(p)
		if err != nil {
			continue // it exited while we looked
		}
		pp, _ := strconv.Atoi(fields[1])
		parent[p] = pp
	}
	if _, ok := parent[pid]; !ok {
		return nil, fmt.Errorf("reading process %d: not running", pid)
	}
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		for p, pp := range parent {
			if pp == tree[i] {
				tree = append(tree, p)
			}
		}
	}
	return tree, nil
}

// statFields returns the fields of /proc/PID/stat after the command name,
// so fields[0] is the state, fields[1] the parent and fields[11] utime.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, fmt.Errorf("reading stat of %d: %w", pid, err)
	}
	// The command name is in parentheses and may itself contain spaces
	// and parentheses: the fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("reading stat of %d: no command name", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 13 {
		return nil, fmt.Errorf("reading stat of %d: %d fields", pid, len(fields))
	}
	return fields, nil
}

// cpuTicks returns utime+stime of one process (all its threads).
func cpuTicks(pid int) (int64, error) {
	fields, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("reading cpu time of %d: bad utime or stime", pid)
	}
	return utime + stime, nil
}

// statusKB returns a "Key: N kB" line of /proc/PID/status.
func statusKB(pid int, key string) (int64, error) {
	return keyKB(fmt.Sprintf("/proc/%d/status", pid), key)
}

// keyKB reads one "Key:   N kB" line of a /proc file such as meminfo.
func keyKB(path, key string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", path, err)
	}
	for line := range strings.Lines(string(b)) {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || name != key {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("reading %s in %s: %w", key, path, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("reading %s: no %s line", path, key)
}

// kernelKB returns the kernel memory that holds idle connections: slab
// (sockets, socket inodes and dentries, files, epoll items, pipe buffer
// rings), kernel stacks and page tables. MemTotal-MemAvailable would be the
// obvious measure, but here it moves by tens of MB on its own, most likely
// because pages on the per-CPU free lists (auto-tuned in size since Linux
// 6.7) are not counted in MemFree. Measured here, 5,000 direct loopback
// connections added 37 MB of slab on every try while MemAvailable moved
// anywhere between -22 MB and +8 MB.
func kernelKB() (int64, error) {
	var sum int64
	for _, key := range []string{"Slab", "KernelStack", "PageTables"} {
		n, err := keyKB("/proc/meminfo", key)
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

// raiseFDLimit lifts the soft open-file limit to the hard one: the idle
// scenario holds a client and a backend fd for each of its connections in
// this process.
func raiseFDLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("reading fd limit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("raising fd limit to %d: %w", lim.Max, err)
		}
	}
	return lim.Cur, nil
}

// pinSelf moves every thread of this process to the given CPUs. Setting
// the affinity of each existing thread matters because sched_setaffinity
// is per thread; threads the Go runtime starts later inherit the mask of
// the thread that clones them.
func pinSelf(cpus []int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("listing threads: %w", err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return fmt.Errorf("pinning thread %d to cpus %v: %w", tid, cpus, err)
		}
	}
	runtime.GOMAXPROCS(len(cpus))
	return nil
}

// reniceSelf sets the nice value of every thread of this process (nice
// is per thread on Linux); threads started later and the proxies, forked
// from these threads, inherit it.
func reniceSelf(nice int) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("listing threads: %w", err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice); err != nil {
			return fmt.Errorf("setting nice %d on thread %d: %w", nice, tid, err)
		}
	}
	return nil
}

// cpuTotals returns the machine's busy CPU time (user, nice, system and
// steal of /proc/stat; interrupt time is left out because loopback
// traffic is processed in softirqs that count there, not in any process)
// and this process's own, including its waited-for children: the
// proxies, once stopped.
func cpuTotals() (machine, self int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("reading /proc/stat: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("reading /proc/stat: unexpected first line %q", line)
	}
	for _, i := range []int{1, 2, 3, 8} { // user nice system steal
		n, _ := strconv.ParseInt(f[i], 10, 64)
		machine += n
	}
	fields, err := statFields(os.Getpid())
	if err != nil {
		return 0, 0, err
	}
	for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		n, _ := strconv.ParseInt(fields[i], 10, 64)
		self += n
	}
	return machine, self, nil
}

// cpuModel returns the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(b)) {
		if name, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// kernelRelease returns the running kernel's release string.
func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// childAttr puts a proxy in its own process group, so that stopping it
// reaches nginx's workers too and a Ctrl-C in the terminal reaches only
// the bench, which then stops the proxies in order; Pdeathsig kills the
// proxy if the bench dies without doing so.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// shrinkSlabs asks SLUB to free the empty slabs of every cache (writing
// to /sys/kernel/slab/*/shrink needs root; without it nothing happens).
// Closed sockets of an earlier run leave their slabs cached, and a proxy
// measured next would reuse them and look cheaper than one measured
// first; shrinking before each reading makes the order not matter.
func shrinkSlabs() {
	paths, _ := filepath.Glob("/sys/kernel/slab/*/shrink")
	for _, p := range paths {
		os.WriteFile(p, []byte("1"), 0) // best effort: some caches refuse
	}
}
