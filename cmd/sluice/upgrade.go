package main

import (
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
//	old: MAINPID=<new> to systemd; UDP proxies closed (the new process
//	     reads their sockets alone); each TCP proxy's established
//	     connections exported and sent with their sockets (SCM_RIGHTS)
//	new: adopts them into its loops, answers how many
//	old: closes its copies, drains what it kept (connecting, TLS, HTTP,
//	     on a listener the new configuration lacks) and exits

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
	to      int      // the new process's pid, once handed over
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
	pid, ctl, err := d.startNew(binary)
	if err != nil {
		d.base.Error("upgrade failed, this process serves on", slog.String("binary", binary),
			slog.String("error", err.Error()))
		// For sluice upgrade without the admin API: the pid file
		// written again, with this pid, says the upgrade failed.
		if err := writePIDFile(d.in.cfg.PIDFile); err != nil {
			d.base.Error("writing the pid file", slog.String("error", err.Error()))
		}
		return 0, err
	}
	defer ctl.Close()
	// The new process serves: from now on it is the service's main
	// process, and this one must not say STOPPING (sd_notify(3)).
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
			// between them: the new one reads alone from now on.
			s.Close()
		}
	}
	n, kept, err := d.handOver(ctl)
	if err != nil {
		d.base.Error("handing connections over", slog.String("error", err.Error()))
	}
	d.base.Info("upgraded: the new process serves; draining what is left here", slog.Int("pid", pid),
		slog.Int("handed_over", n), slog.Int("not_handed_over", kept))
	close(d.up.done)
	return pid, nil
}

// startNew starts binary with the sockets and waits until it serves. It
// returns its pid and the control socket.
func (d *daemon) startNew(binary string) (int, *net.UnixConn, error) {
	keys, fds, err := d.in.upgradeFDs()
	defer closeFDs(fds)
	if err != nil {
		return 0, nil, err
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, nil, fmt.Errorf("upgrading: %w", err)
	}
	mine := os.NewFile(uintptr(pair[0]), "control")
	fc, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		unix.Close(pair[1])
		return 0, nil, fmt.Errorf("upgrading: %w", err)
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
		return 0, nil, fmt.Errorf("upgrading: starting %s: %w", binary, err)
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		ctl.Close()
		return 0, nil, fmt.Errorf("upgrading: the new process (pid %d): %w", pid, err)
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
		return 0, nil, fmt.Errorf("upgrading: the new process (pid %d): %w", pid, err)
	}
	d.up.accept = r.TCP
	return r.PID, ctl, nil
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

// handOver exports the established connections of the TCP proxies (of
// the configuration in force, and those a reload retired) whose listener
// the new process serves, and sends them over ctl. It returns how many the new
// process adopted and how many connections were kept here to drain.
func (d *daemon) handOver(ctl *net.UnixConn) (adopted, kept int, err error) {
	accept := map[string]bool{}
	for _, name := range d.up.accept {
		accept[name] = true
	}
	var sent []int
	defer func() { closeFDs(sent) }()
	// The proxies a reload replaced too: their connections would
	// otherwise end at the drain timeout.
	for _, s := range d.downs.all() {
		if !accept[s.Name] {
			continue
		}
		for _, h := range s.Export() {
			if err == nil {
				err = writeFrame(ctl, handoffMsg{Listener: s.Name, Handoff: h}, h.ClientFD, h.BackendFD)
			}
			// Sent or not, this process's descriptors are closed once
			// the new process has answered (or has failed).
			sent = append(sent, h.ClientFD, h.BackendFD)
			if err != nil {
				kept++
			}
		}
	}
	if err != nil {
		return 0, kept, err
	}
	if err := writeRaw(ctl, nil); err != nil {
		return 0, kept, err
	}
	ctl.SetReadDeadline(time.Now().Add(adoptTimeout))
	var ack adoptedMsg
	fds, err := readFrame(ctl, &ack)
	closeFDs(fds)
	if err != nil {
		return 0, kept, err
	}
	if len(ack.Errors) > 0 {
		err = fmt.Errorf("the new process could not adopt every connection: %s", strings.Join(ack.Errors, "; "))
	}
	return ack.Adopted, kept, err
}

// handoffMsg is one connection on its way to the new process.
type handoffMsg struct {
	Listener string `json:"listener"`
	l4.Handoff
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
