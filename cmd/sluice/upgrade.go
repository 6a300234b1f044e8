package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"sluice/l4"
	"sluice/l4/udp"
)

// A binary upgrade (SIGUSR2, POST /api/v1/upgrade, sluice upgrade):
//
//	old: dup every listening socket (and the admin socket) → start the
//	     new binary with them (fds 3...), the same arguments, and a
//	     control socket
//	new: read and check the file, start on those sockets (so both
//	     processes accept from the same queues: nothing is refused) →
//	     "ready" on the control socket; or exit, and the old one goes on
//	old: each TCP proxy stops accepting (its sockets stay open) and its
//	     established connections are exported and sent with their
//	     sockets (SCM_RIGHTS); then each UDP proxy stops reading and its
//	     sessions go the same way (see handover_udp.go)
//	new: adopts them into its loops, reads its UDP sockets, answers how
//	     many, writes the pid file
//	old: closes its copies; MAINPID=<new> to systemd; UDP proxies closed
//	     (the new process reads their sockets alone); admin server shut
//	     down; drains what it kept (connecting, TLS, HTTP, on a
//	     listener the new configuration lacks) and exits. If the new
//	     process fails before it answers: killed, connections taken back
//	     (takeBack), and the proxies accept again

// upgradeTimeout bounds the new process's start: reading its file, its
// first health checks (5 s at most), opening its listeners.
const upgradeTimeout = time.Minute

// adoptTimeout bounds the new process's adoption of the connections.
const adoptTimeout = time.Minute

// upgrader is the daemon's upgrade state, under daemon.mu.
type upgrader struct {
	exe     string     // the binary sluice was started from, absolute
	args    []string   // its arguments, for the new process
	inherit *inherited // the old process's sockets, while start applies the first configuration
	done    chan struct{}
	accept  []string // the TCP listeners the new process adopts connections for
	// acceptUDP are the UDP listeners it adopts sessions for.
	acceptUDP []string
	to        int // the new process's pid, once handed over
}

// errUpgraded refuses reloads and upgrades once another process serves.
var errUpgraded = errors.New("sluice has handed over to a new process")

// executable returns the path this process was started from, absolute:
// an upgrade starts what is at that path then (the new binary put in the
// old one's place). Not os.Executable: on Linux that is the file this
// process runs, which a replaced binary leaves "(deleted)".
func executable() string {
	exe := os.Args[0]
	if !strings.Contains(exe, "/") {
		if p, err := exec.LookPath(exe); err == nil {
			exe = p
		}
	}
	if abs, err := filepath.Abs(exe); err == nil {
		exe = abs
	}
	return exe
}

// handedOver is closed once a new process serves in this one's place.
func (d *daemon) handedOver() <-chan struct{} { return d.up.done }

// upgrade starts binary ("" for the one sluice was started from) on this
// process's sockets and, once it serves, hands it the established
// connections. It returns the new process's pid; with an error this
// process goes on serving as before.
func (d *daemon) upgrade(binary string) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.closed:
		return 0, errors.New("upgrading: sluice is shutting down")
	case d.up.to != 0:
		return 0, fmt.Errorf("upgrading: %w (pid %d)", errUpgraded, d.up.to)
	case d.load == nil:
		return 0, errors.New("upgrading: this sluice runs no configuration file")
	}
	if binary == "" {
		binary = d.up.exe
	}
	d.base.Info("upgrading", slog.String("binary", binary))
	pid, proc, ctl, err := d.startNew(binary)
	if err != nil {
		return 0, d.upgradeFailed(binary, err)
	}
	hs := d.exportAll()
	us, ack, err := sendHandoffs(ctl, hs, d.exportUDP, time.Now().Add(adoptTimeout))
	ctl.Close()
	for _, p := range ack.Errors {
		d.base.Warn("the new process could not adopt a connection", slog.String("error", p))
	}
	if err != nil {
		// It said it serves, then failed: it is stopped for good,
		// and this process takes its connections back.
		proc.Kill()
		d.takeBack(hs, us)
		return 0, d.upgradeFailed(binary, fmt.Errorf("upgrading: the new process (pid %d) failed taking over: %w", proc.Pid, err))
	}
	releaseUDP(us)
	d.handedOverTo(pid, hs)
	d.base.Info("upgraded: the new process serves; draining what is left here", slog.Int("pid", pid),
		slog.Int("handed_over", ack.Adopted), slog.Int("udp_sessions", ack.UDP))
	return pid, nil
}

// upgradeFailed logs err and returns it: this process serves on.
func (d *daemon) upgradeFailed(binary string, err error) error {
	d.base.Error("upgrade failed, this process serves on", slog.String("binary", binary),
		slog.String("error", err.Error()))
	// For sluice upgrade without the admin API: the pid file written
	// again, with this pid, says the upgrade failed.
	if err := writePIDFile(d.in.cfg.PIDFile); err != nil {
		d.base.Error("writing the pid file", slog.String("error", err.Error()))
	}
	return err
}

// handedOverTo makes process pid the service: it has the connections of
// hs (this process closes its copies), and reads the UDP sockets alone.
// Then serve's loop ends, and the drain of what is left here begins.
func (d *daemon) handedOverTo(pid int, hs []exported) {
	for _, e := range hs {
		for _, h := range e.hs {
			unix.Close(h.ClientFD)
			unix.Close(h.BackendFD)
		}
	}
	// From now on it is the service's main process, and this one must
	// not say STOPPING (sd_notify(3)).
	d.notify(fmt.Sprintf("MAINPID=%d", pid))
	d.up.to = pid
	if a := d.in.admin; a != nil {
		if ul, ok := a.ln.(*net.UnixListener); ok {
			// The socket file is the new process's now.
			ul.SetUnlinkOnClose(false)
		}
	}
	for _, l := range d.in.lns {
		if s, ok := l.srv.(*udp.Server); ok {
			// Both processes reading one socket would split flows
			// between them.
			s.Close()
		}
	}
	close(d.up.done)
}

// startNew starts binary with the sockets and waits until it serves. It
// returns its pid and the control socket.
func (d *daemon) startNew(binary string) (int, *os.Process, *net.UnixConn, error) {
	keys, fds, err := d.in.upgradeFDs()
	defer closeFDs(fds)
	if err != nil {
		return 0, nil, nil, err
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("upgrading: %w", err)
	}
	mine := os.NewFile(uintptr(pair[0]), "control")
	fc, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		unix.Close(pair[1])
		return 0, nil, nil, fmt.Errorf("upgrading: %w", err)
	}
	ctl := fc.(*net.UnixConn)
	env, _ := json.Marshal(append([]string{ctlKey}, keys...))
	// syscall.ForkExec, not os/exec: exec.Cmd takes *os.File, whose Fd
	// method puts a descriptor in blocking mode, and O_NONBLOCK belongs
	// to the socket shared with this process's loops, whose accept4
	// would then block (with the loop's thread, and the runtime's
	// stop-the-world with it).
	files := append([]uintptr{0, 1, 2, uintptr(pair[1])}, uintptrs(fds)...)
	argv := append([]string{binary}, d.up.args...)
	pid, err := syscall.ForkExec(binary, argv, &syscall.ProcAttr{
		Env:   append(withoutEnv(os.Environ(), upgradeEnv), upgradeEnv+"="+string(env)),
		Files: files,
	})
	// The new process has its copy (or none was made).
	unix.Close(pair[1])
	if err != nil {
		ctl.Close()
		return 0, nil, nil, fmt.Errorf("upgrading: starting %s: %w", binary, err)
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		ctl.Close()
		return 0, nil, nil, fmt.Errorf("upgrading: the new process (pid %d): %w", pid, err)
	}
	// Reaped here if it fails; if it takes over, this process exits
	// before it does, and it is its own.
	exited := make(chan error, 1)
	go func() {
		st, err := proc.Wait()
		if err == nil && !st.Success() {
			err = errors.New(st.String())
		}
		exited <- err
	}()
	r, err := waitReady(ctl, exited)
	if err != nil {
		ctl.Close()
		proc.Kill()
		return 0, nil, nil, fmt.Errorf("upgrading: the new process (pid %d): %w", pid, err)
	}
	d.up.accept, d.up.acceptUDP = r.TCP, r.UDP
	if r.PID <= 1 {
		r.PID = pid
	}
	// r.PID, not pid: the program may be a wrapper that runs sluice.
	return r.PID, proc, ctl, nil
}

// waitReady waits for the new process's ready message; its exit or
// upgradeTimeout fails the upgrade.
func waitReady(ctl *net.UnixConn, exited <-chan error) (readyMsg, error) {
	var r readyMsg
	got := make(chan error, 1)
	go func() {
		fds, err := readFrame(ctl, &r)
		closeFDs(fds)
		got <- err
	}()
	timer := time.NewTimer(upgradeTimeout)
	defer timer.Stop()
	var err error
	select {
	case err = <-got:
		if err == nil {
			return r, nil
		}
		// Its end of the socket closed: it exited, or is about to.
		select {
		case e := <-exited:
			err = exitError(e)
		case <-time.After(5 * time.Second):
		}
		return r, err
	case e := <-exited:
		err = exitError(e)
	case <-timer.C:
		err = fmt.Errorf("not ready within %v", upgradeTimeout)
	}
	ctl.SetReadDeadline(time.Now()) // ends the read
	<-got
	return r, err
}

func exitError(e error) error {
	if e == nil {
		return errors.New("exited (status 0) before it was ready")
	}
	return fmt.Errorf("exited before it was ready: %w", e)
}

// exported is what one TCP proxy gave up for the new process.
type exported struct {
	s    *l4.Server
	hs   []l4.Handoff
	sent int // how many of hs went to the new process
}

// exportAll exports the established connections of the TCP proxies (of
// the configuration in force, and those a reload retired, whose
// connections would otherwise end at the drain timeout) whose listener
// the new process serves. Those proxies stop accepting meanwhile.
func (d *daemon) exportAll() []exported {
	accept := map[string]bool{}
	for _, name := range d.up.accept {
		accept[name] = true
	}
	var out []exported
	for _, s := range d.downs.all() {
		if accept[s.Name] {
			out = append(out, exported{s: s, hs: s.Export()})
		}
	}
	return out
}

// sendHandoffs sends the connections of hs over ctl, then the UDP
// sessions exportUDP gives up, and waits for the new process's answer:
// how many it adopted, and why not the others (those it has reset). It
// returns the sessions with the answer. An error means the new process
// failed. The writes end by writeBy: a new process that stopped reading
// would otherwise block them for good, with daemon.mu held, and this
// process could not even shut down.
func sendHandoffs(ctl *net.UnixConn, hs []exported, exportUDP func() []exportedUDP, writeBy time.Time) ([]exportedUDP, adoptedMsg, error) {
	var ack adoptedMsg
	ctl.SetWriteDeadline(writeBy)
	for i := range hs {
		e := &hs[i]
		for _, h := range e.hs {
			if err := writeFrame(ctl, handoffMsg{Listener: e.s.Name, Handoff: h}, h.ClientFD, h.BackendFD); err != nil {
				return nil, ack, err
			}
			e.sent++
		}
	}
	// Exported only now: from here until the new process reads the
	// UDP sockets, their datagrams wait in the queues.
	us := exportUDP()
	if err := sendUDP(ctl, us); err != nil {
		return us, ack, err
	}
	if err := writeRaw(ctl, nil); err != nil {
		return us, ack, err
	}
	// Its import has adoptTimeout of its own from now.
	ctl.SetReadDeadline(time.Now().Add(adoptTimeout))
	fds, err := readFrame(ctl, &ack)
	closeFDs(fds)
	return us, ack, err
}

// takeBack undoes exportAll after the new process failed: the connections
// it was not sent go back to their proxies, which accept again; those it
// was sent are reset, since it may have moved some of their bytes before
// it failed.
func (d *daemon) takeBack(hs []exported, us []exportedUDP) {
	backend := backendFinder(d.pools)(nil)
	ctx, cancel := context.WithTimeout(context.Background(), adoptTimeout)
	defer cancel()
	defer d.takeBackUDP(ctx, us)
	for _, e := range hs {
		for _, h := range e.hs[:e.sent] {
			resetHandoff(h)
		}
		if _, err := e.s.Import(ctx, e.hs[e.sent:], backend); err != nil {
			d.base.Error("taking connections back", slog.String("listener", e.s.Name), slog.String("error", err.Error()))
		}
		e.s.Resume()
		if e.sent > 0 {
			d.base.Warn("connections reset: sent to the new process before it failed", slog.String("listener", e.s.Name),
				slog.Int("connections", e.sent))
		}
	}
}

func resetHandoff(h l4.Handoff) {
	for _, fd := range [...]int{h.ClientFD, h.BackendFD} {
		unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		unix.Close(fd)
	}
}

// handoffMsg is one connection on its way to the new process, or a batch
// of UDP sessions.
type handoffMsg struct {
	Listener string `json:"listener"`
	l4.Handoff
	// UDP, if not empty, makes the frame a batch of the listener's UDP
	// sessions, with their sockets attached in order, and no connection.
	UDP []udp.Handoff `json:"udp,omitempty"`
}

// upgradeFDs returns copies (close-on-exec) of in's listening sockets and
// admin socket, and their keys.
func (in *instance) upgradeFDs() ([]string, []int, error) {
	var keys []string
	var fds []int
	add := func(key string, c syscall.Conn) error {
		fd, err := dupConn(c)
		if err != nil {
			return fmt.Errorf("upgrading: passing socket %s: %w", key, err)
		}
		keys, fds = append(keys, key), append(fds, fd)
		return nil
	}
	for _, l := range in.lns {
		for i, ln := range l.tcp {
			if err := add(socketKey(l.lc, i), ln); err != nil {
				return nil, fds, err
			}
		}
		for i, c := range l.udp {
			if err := add(socketKey(l.lc, i), c); err != nil {
				return nil, fds, err
			}
		}
	}
	if a := in.admin; a != nil && a.ln != nil {
		if c, ok := a.ln.(syscall.Conn); ok {
			if err := add(adminKey, c); err != nil {
				return nil, fds, err
			}
		}
	}
	return keys, fds, nil
}

// dupConn returns a close-on-exec copy of c's descriptor.
func dupConn(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	return nfd, derr
}

func uintptrs(fds []int) []uintptr {
	out := make([]uintptr, len(fds))
	for i, fd := range fds {
		out[i] = uintptr(fd)
	}
	return out
}

func withoutEnv(env []string, name string) []string {
	out := env[:0:0]
	for _, e := range env {
		if !strings.HasPrefix(e, name+"=") {
			out = append(out, e)
		}
	}
	return out
}
