package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"sluice/internal/admin"
)

// lineage is a sluice and the processes its upgrades start. It runs a
// copy of the test binary, which a test may replace as an operator would,
// and logs to a file: every process inherits the output, and a pipe
// would keep the test waiting for the last of them.
type lineage struct {
	t       *testing.T
	exe     string
	pidFile string
	logPath string
	mu      sync.Mutex
	seen    map[int]bool
}

// startLineage copies the binary into a temporary directory and starts it
// on the configuration text (which must set pid_file = l.pidFile: see
// pidFileFor), with env added to its environment.
func startLineage(t *testing.T, dir, config string, env ...string) *lineage {
	t.Helper()
	l := &lineage{t: t, exe: filepath.Join(dir, "sluice"), pidFile: pidFileFor(dir),
		logPath: filepath.Join(dir, "sluice.log"), seen: map[int]bool{}}
	l.install(bin)
	out, err := os.Create(l.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(l.exe, "-c", writeFile(t, config))
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	reaped := make(chan struct{})
	go func() {
		cmd.Wait()
		close(reaped)
	}()
	t.Cleanup(func() {
		l.mu.Lock()
		for pid := range l.seen {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		l.mu.Unlock()
		cmd.Process.Kill()
		<-reaped
		if t.Failed() {
			t.Logf("sluice log:\n%s", l.output())
		}
	})
	l.seen[cmd.Process.Pid] = true
	waitFor(t, 20*time.Second, "the pid file", func() bool { return l.pidOr0() == cmd.Process.Pid })
	return l
}

func pidFileFor(dir string) string { return filepath.Join(dir, "sluice.pid") }

// install puts the program at path src in the place sluice was started
// from, by rename: the running binary's file cannot be written to.
func (l *lineage) install(src string) {
	l.t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		l.t.Fatal(err)
	}
	tmp := l.exe + ".new"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		l.t.Fatal(err)
	}
	if err := os.Rename(tmp, l.exe); err != nil {
		l.t.Fatal(err)
	}
}

func (l *lineage) output() string {
	b, _ := os.ReadFile(l.logPath)
	return string(b)
}

func (l *lineage) pidOr0() int {
	pid, err := readPIDFile(l.pidFile)
	if err != nil {
		return 0
	}
	l.mu.Lock()
	l.seen[pid] = true
	l.mu.Unlock()
	return pid
}

// waitNew waits until the pid file names a process other than old, and
// returns it.
func (l *lineage) waitNew(old int) int {
	l.t.Helper()
	var pid int
	waitFor(l.t, 90*time.Second, fmt.Sprintf("a process other than %d in the pid file", old), func() bool {
		pid = l.pidOr0()
		return pid != 0 && pid != old
	})
	return pid
}

// gone says whether pid has exited (a zombie, not yet reaped by whoever
// inherited it, has).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// pid (comm) state ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

// scrape reads one metric of the admin listener at addr.
func scrape(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return metric(b, name)
}

// pacedLoad counts the new connections paced opens: those served, those
// refused (the connect failed) and those that failed otherwise, with the
// first error.
type pacedLoad struct {
	ok, refused, failed atomic.Int64
	firstErr            atomic.Value
}

// paced opens about rate new connections a second, each with one echoed
// line, until stop closes, and counts them in load.
func paced(addr string, rate int, stop <-chan struct{}, load *pacedLoad) {
	const workers = 10
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			tick := time.NewTicker(time.Second * workers / time.Duration(rate))
			defer tick.Stop()
			for i := w; ; i += workers {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				err := oneExchange(addr, i)
				var op *net.OpError
				switch {
				case err == nil:
					load.ok.Add(1)
				case errors.As(err, &op) && op.Op == "dial":
					load.refused.Add(1)
					load.firstErr.CompareAndSwap(nil, err.Error())
				default:
					load.failed.Add(1)
					load.firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		})
	}
	wg.Wait()
}

// Twenty binary upgrades, alternately by SIGUSR2 and by sluice upgrade
// (the admin API), under about 500 new connections a second and six
// long-lived checksummed streams: no connection is refused or fails, every
// stream goes on through every upgrade with every byte intact (each is
// handed from process to process), and each old process exits. The last
// process holds no more goroutines or descriptors than the first did.
func TestUpgradesUnderLoadKeepEveryConnection(t *testing.T) {
	a, b := nameBackend(t, "a"), nameBackend(t, "b")
	addr, adm := freePort(t), freePort(t)
	dir := t.TempDir()
	extra := fmt.Sprintf("pid_file = %q\n[admin]\nbind = %q\n", pidFileFor(dir), adm)
	l := startLineage(t, dir, reloadConfig(addr, "round_robin", "10m", extra, a, b))
	baseG, baseFD := scrape(t, adm, "go_goroutines"), scrape(t, adm, "process_open_fds")
	cfgPath := strings.TrimSpace(mustArg(t, l))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var streams []*stream
	for range 6 {
		s := &stream{}
		streams = append(streams, s)
		wg.Go(func() { s.run(addr, stop) })
	}
	var load pacedLoad
	wg.Go(func() { paced(addr, 500, stop, &load) })

	const upgrades = 20
	pid := l.pidOr0()
	progress := func() []int64 {
		var p []int64
		for _, s := range streams {
			p = append(p, s.got.Load())
		}
		return p
	}
	for i := 1; i <= upgrades; i++ {
		// Each process serves some of the load before the next
		// upgrade, and every stream moves on through it.
		served, before := load.ok.Load(), progress()
		waitFor(t, 20*time.Second, "new connections before the upgrade", func() bool { return load.ok.Load() >= served+50 })
		if i%2 == 1 {
			syscall.Kill(pid, syscall.SIGUSR2)
		} else if out, code := runSluice(t, "upgrade", "-c", cfgPath); code != 0 || !strings.Contains(out, "upgraded") {
			t.Fatalf("sluice upgrade exited %d:\n%s", code, out)
		}
		next := l.waitNew(pid)
		waitFor(t, 30*time.Second, fmt.Sprintf("process %d to exit after upgrade %d", pid, i), func() bool { return gone(pid) })
		pid = next
		waitFor(t, 20*time.Second, fmt.Sprintf("every stream to move on after upgrade %d", i), func() bool {
			after := progress()
			for j := range before {
				if after[j] <= before[j] {
					return false
				}
			}
			return true
		})
	}
	close(stop)
	wg.Wait()

	log := l.output()
	if n := strings.Count(log, "upgraded: the new process serves"); n != upgrades {
		t.Errorf("%d upgrades logged, want %d", n, upgrades)
	}
	var streamed int64
	for _, s := range streams {
		if s.err != nil {
			t.Errorf("stream: %v", s.err)
		}
		if s.sent.Load() != s.got.Load() {
			t.Errorf("stream sent %d bytes, got back %d", s.sent.Load(), s.got.Load())
		}
		streamed += s.got.Load()
	}
	t.Logf("%d upgrades: %d new connections (%d refused, %d failed), %d streams carried %d bytes",
		upgrades, load.ok.Load(), load.refused.Load(), load.failed.Load(), len(streams), streamed)
	if load.refused.Load()+load.failed.Load() > 0 {
		t.Errorf("%d refused and %d failed of %d new connections; first: %v", load.refused.Load(), load.failed.Load(),
			load.ok.Load()+load.refused.Load()+load.failed.Load(), load.firstErr.Load())
	}
	if load.ok.Load() == 0 || streamed == 0 {
		t.Errorf("no traffic moved")
	}
	// Every upgrade handed the six streams over (and whatever else was
	// established at that moment).
	handed := 0
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "upgrade: took over") {
			var n int
			if i := strings.Index(line, "connections="); i >= 0 {
				fmt.Sscanf(line[i:], "connections=%d", &n)
			}
			if n < 6 {
				t.Errorf("an upgrade took over %d connections, want the 6 streams at least: %s", n, line)
			}
			handed++
		}
	}
	if handed != upgrades {
		t.Errorf("%d take-overs logged, want %d", handed, upgrades)
	}
	// Leaks: the last process, idle again, against the first one idle.
	waitFor(t, 20*time.Second, "the last process back to the first one's goroutines and fds", func() bool {
		g, fds := scrape(t, adm, "go_goroutines"), scrape(t, adm, "process_open_fds")
		return g <= baseG+2 && fds <= baseFD+2
	})
}

// mustArg returns the configuration path the lineage runs (its -c).
func mustArg(t *testing.T, l *lineage) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(l.pidOr0()) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	return args[len(args)-1]
}

// An upgrade to a binary that exits at once, and one whose new process
// finds errors in the file, both leave the old process serving: its
// established connection and new ones go on, with not one refused, the
// failure is logged, and sluice upgrade (by signal and pid file here)
// reports it. Put back, the real binary then upgrades.
func TestFailedUpgradeKeepsTheOldProcessServing(t *testing.T) {
	a := nameBackend(t, "a")
	addr := freePort(t)
	dir := t.TempDir()
	good := reloadConfig(addr, "round_robin", "10m", fmt.Sprintf("pid_file = %q\n", pidFileFor(dir)), a)
	l := startLineage(t, dir, good)
	cfgPath := mustArg(t, l)
	pid := l.pidOr0()
	held, hr, _ := dialLine(t, addr)

	stop := make(chan struct{})
	var load pacedLoad
	done := make(chan struct{})
	go func() {
		defer close(done)
		paced(addr, 200, stop, &load)
	}()

	// A binary that exits at once.
	script := filepath.Join(dir, "broken")
	os.WriteFile(script, []byte("#!/bin/sh\nexit 3\n"), 0o755)
	l.install(script)
	out, code := runSluice(t, "upgrade", "-c", cfgPath)
	if code != 1 || !strings.Contains(out, "upgrade failed") {
		t.Fatalf("sluice upgrade to a binary that exits: exit %d:\n%s", code, out)
	}
	if log := l.output(); !strings.Contains(log, "upgrade failed, this process serves on") || !strings.Contains(log, "exit status 3") {
		t.Fatalf("the failed upgrade is not logged with its cause:\n%s", log)
	}

	// The real binary, but a file it refuses.
	l.install(bin)
	os.WriteFile(cfgPath, []byte(good+"bogus = 1\n"), 0o644)
	syscall.Kill(pid, syscall.SIGUSR2)
	waitFor(t, 60*time.Second, "the second failure logged", func() bool {
		return strings.Count(l.output(), "upgrade failed, this process serves on") == 2
	})
	if log := l.output(); !strings.Contains(log, "bogus") {
		t.Fatalf("the new process's errors are not in the log:\n%s", log)
	}
	if l.pidOr0() != pid || gone(pid) {
		t.Fatalf("after failed upgrades the pid file names %d, want %d still running", l.pidOr0(), pid)
	}
	fmt.Fprintln(held, "still there")
	if line, err := hr.ReadString('\n'); err != nil || line != "still there\n" {
		t.Fatalf("the established connection after failed upgrades: %q, %v", line, err)
	}

	// Fixed: the upgrade goes through, and the held connection with it.
	os.WriteFile(cfgPath, []byte(good), 0o644)
	if out, code := runSluice(t, "upgrade", "-c", cfgPath); code != 0 {
		t.Fatalf("sluice upgrade exited %d:\n%s", code, out)
	}
	l.waitNew(pid)
	waitFor(t, 30*time.Second, "the old process to exit", func() bool { return gone(pid) })
	close(stop)
	<-done
	fmt.Fprintln(held, "moved")
	if line, err := hr.ReadString('\n'); err != nil || line != "moved\n" {
		t.Fatalf("the established connection after the upgrade: %q, %v", line, err)
	}
	if load.refused.Load()+load.failed.Load() > 0 || load.ok.Load() == 0 {
		t.Fatalf("%d new connections, %d refused, %d failed; first: %v", load.ok.Load(), load.refused.Load(), load.failed.Load(), load.firstErr.Load())
	}
}

// systemd (a Unix datagram socket standing in) hears READY=1 from the
// first process; at the upgrade, MAINPID= the new process from the old
// one, and no STOPPING=1 from it as it drains and exits; STOPPING=1 from
// the new one when it is stopped.
func TestUpgradeTellsSystemdTheNewMainPID(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addr := freePort(t)
	dir := t.TempDir()
	l := startLineage(t, dir, reloadConfig(addr, "round_robin", "10m", fmt.Sprintf("pid_file = %q\n", pidFileFor(dir)),
		echoBackend(t)), "NOTIFY_SOCKET="+sock)
	next := func() string {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}
	if got := next(); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	old := l.pidOr0()
	syscall.Kill(old, syscall.SIGUSR2)
	got := next()
	pid := l.waitNew(old)
	if want := fmt.Sprintf("MAINPID=%d", pid); got != want {
		t.Fatalf("notification at the upgrade %q, want %q", got, want)
	}
	waitFor(t, 30*time.Second, "the old process to exit", func() bool { return gone(old) })
	syscall.Kill(pid, syscall.SIGTERM)
	if got := next(); got != "STOPPING=1" {
		t.Fatalf("notification after the upgrade %q, want STOPPING=1 from the new process", got)
	}
	waitFor(t, 30*time.Second, "the new process to exit", func() bool { return gone(pid) })
}

// POST /api/v1/upgrade answers 422 with the cause when the new binary
// fails, and 200 with the new pid when it serves.
func TestUpgradeThroughTheAdminAPI(t *testing.T) {
	addr, adm := freePort(t), freePort(t)
	dir := t.TempDir()
	l := startLineage(t, dir, reloadConfig(addr, "round_robin", "10m",
		fmt.Sprintf("pid_file = %q\n[admin]\nbind = %q\n", pidFileFor(dir), adm), echoBackend(t)))
	old := l.pidOr0()
	api := adminClient{t: t, base: "http://" + adm}
	// Over TCP the API may not name a program: the token would be enough
	// to run anything as sluice's user.
	body, _ := json.Marshal(admin.UpgradeRequest{Binary: "/bin/false"})
	code, b := api.do(http.MethodPost, "/api/v1/upgrade", string(body))
	if code != http.StatusForbidden || !strings.Contains(string(b), "Unix-socket") {
		t.Fatalf("upgrade naming /bin/false over TCP: %d %s", code, b)
	}
	real := l.exe + ".real"
	if err := os.Link(l.exe, real); err != nil {
		t.Fatal(err)
	}
	l.install("/bin/false")
	code, b = api.do(http.MethodPost, "/api/v1/upgrade", "")
	var r admin.UpgradeJSON
	if json.Unmarshal(b, &r); code != http.StatusUnprocessableEntity || r.Result != "failed" || !strings.Contains(r.Error, "exit status 1") {
		t.Fatalf("upgrade to /bin/false: %d %s", code, b)
	}
	l.install(real)
	code, b = api.do(http.MethodPost, "/api/v1/upgrade", "")
	if json.Unmarshal(b, &r); code != http.StatusOK || r.Result != "ok" || r.PID == 0 || r.PID == old {
		t.Fatalf("upgrade: %d %s", code, b)
	}
	if pid := l.waitNew(old); pid != r.PID {
		t.Fatalf("the pid file names %d, the API said %d", pid, r.PID)
	}
	waitFor(t, 30*time.Second, "the old process to exit", func() bool { return gone(old) })
	// The admin listener went over too.
	var st admin.StatusJSON
	api.get("/api/v1/status", &st)
	if !bytes.Contains(b, []byte(strconv.Itoa(r.PID))) || len(st.Listeners) != 1 {
		t.Fatalf("status after the upgrade: %+v", st)
	}
}

// A connection opened before a reload that replaced its listener's proxy
// (it stays on the retired proxy) is handed over too: it outlives the old
// process, which drains for only a second here.
func TestUpgradeHandsOverWhatAReloadRetired(t *testing.T) {
	a := nameBackend(t, "a")
	addr := freePort(t)
	dir := t.TempDir()
	file := func(idle string) string {
		return strings.Replace(reloadConfig(addr, "round_robin", idle, fmt.Sprintf("pid_file = %q\n", pidFileFor(dir)), a),
			`drain_timeout = "20s"`, `drain_timeout = "1s"`, 1)
	}
	l := startLineage(t, dir, file("10m"))
	cfgPath := mustArg(t, l)
	old := l.pidOr0()
	held, hr, _ := dialLine(t, addr)
	os.WriteFile(cfgPath, []byte(file("9m")), 0o644)
	syscall.Kill(old, syscall.SIGHUP)
	waitFor(t, 20*time.Second, "the reload", func() bool { return strings.Contains(l.output(), "configuration reloaded") })
	syscall.Kill(old, syscall.SIGUSR2)
	l.waitNew(old)
	waitFor(t, 30*time.Second, "the old process to exit", func() bool { return gone(old) })
	fmt.Fprintln(held, "after")
	if line, err := hr.ReadString('\n'); err != nil || line != "after\n" {
		t.Fatalf("the connection from before the reload, after the upgrade: %q, %v", line, err)
	}
	if log := l.output(); !strings.Contains(log, "handed_over=1") {
		t.Fatalf("not handed over:\n%s", log)
	}
}

// A new process that says it serves and then dies (a stand-in speaking
// the first frame of the protocol) leaves the old one serving: it never
// stopped listening, so no new connection is refused; a connection it did
// not send over goes on there; those it had sent are reset, not left
// hanging (the dead process may have moved some of their bytes).
func TestUpgradeFailingAfterReadyTakesConnectionsBack(t *testing.T) {
	a := nameBackend(t, "a")
	addr := freePort(t)
	dir := t.TempDir()
	l := startLineage(t, dir, reloadConfig(addr, "round_robin", "10m", fmt.Sprintf("pid_file = %q\n", pidFileFor(dir)), a))
	pid := l.pidOr0()
	held, hr, _ := dialLine(t, addr)

	stop := make(chan struct{})
	var load pacedLoad
	done := make(chan struct{})
	go func() {
		defer close(done)
		paced(addr, 200, stop, &load)
	}()

	// Ready for no listener: nothing but the end marker is sent. A
	// frame is a 4-byte length and the JSON.
	// It reads a frame's length before it dies, so that the old process
	// has sent something.
	fake := func(ready string) {
		script := fmt.Sprintf("#!/bin/sh\nprintf '\\000\\000\\000\\%03o%s' >&3\nhead -c 4 <&3 >/dev/null\n", len(ready), ready)
		path := filepath.Join(dir, "fake")
		os.WriteFile(path, []byte(script), 0o755)
		l.install(path)
	}
	waitFor(t, 20*time.Second, "some load", func() bool { return load.ok.Load() >= 20 })
	fake(`{"pid":1,"tcp":[]}`)
	syscall.Kill(pid, syscall.SIGUSR2)
	waitFor(t, 60*time.Second, "the failure logged", func() bool {
		return strings.Contains(l.output(), "failed taking over")
	})
	fmt.Fprintln(held, "kept")
	if line, err := hr.ReadString('\n'); err != nil || line != "kept\n" {
		t.Fatalf("the connection not sent over: %q, %v", line, err)
	}

	if n := load.failed.Load() + load.refused.Load(); n > 0 {
		t.Fatalf("%d new connections failed around an upgrade that sent nothing; first: %v", n, load.firstErr.Load())
	}

	// Ready for listener t: the held connection is sent (with the new
	// connections established at that moment), then the process is
	// found gone.
	fake(`{"pid":1,"tcp":["t"]}`)
	syscall.Kill(pid, syscall.SIGUSR2)
	waitFor(t, 60*time.Second, "the second failure logged", func() bool {
		return strings.Count(l.output(), "failed taking over") == 2
	})
	held.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintln(held, "sent")
	if line, err := hr.ReadString('\n'); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the connection sent to the failed process: %q, %v; want it reset", line, err)
	}
	served, resetN := load.ok.Load(), load.failed.Load()
	waitFor(t, 20*time.Second, "load after the failures", func() bool { return load.ok.Load() >= served+20 })
	close(stop)
	<-done
	if load.failed.Load() != resetN {
		t.Fatalf("%d new connections failed after the failed upgrades", load.failed.Load()-resetN)
	}
	if l.pidOr0() != pid || gone(pid) {
		t.Fatalf("the old process (%d) is not serving; pid file %d", pid, l.pidOr0())
	}
	if _, _, g := dialLine(t, addr); g != "a" {
		t.Fatalf("a new connection after the failures reached %q", g)
	}
	if load.refused.Load() > 0 {
		t.Fatalf("%d new connections refused; first: %v", load.refused.Load(), load.firstErr.Load())
	}
	if log := l.output(); strings.Contains(log, "upgraded: the new process serves") {
		t.Fatalf("an upgrade that failed was taken for done:\n%s", log)
	}
}
