// Package dbproc runs throwaway database servers (PostgreSQL, Redis,
// MariaDB) as child processes on loopback: the part that internal/dbtest
// (for tests, through testing.TB) and the bench (a program) share. It knows
// how to start a server so that it cannot outlive us, tell a port taken
// meanwhile from other failures, wait for readiness, and stop it with its
// children.
//
//	err := dbproc.WithFreePort(func(port uint16) error {
//		p, err := dbproc.Start("redis", dbproc.Options{Dir: dir, StopSignal: syscall.SIGTERM}, bin, args...)
//		...
//		return p.WaitReady(ctx, ping)
//	})
package dbproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Timeouts for starting and stopping a server. Generous: tests and the
// bench share two cores with other work.
const (
	ReadyTimeout = 60 * time.Second
	StopTimeout  = 20 * time.Second
	pollEvery    = 20 * time.Millisecond
	portAttempts = 3 // a free port can be taken by another process before the server binds it
)

// ErrPortInUse means a server exited because its port was taken before it
// bound it; WithFreePort tries another.
var ErrPortInUse = errors.New("dbproc: port already in use")

// Options say how to run a server process.
type Options struct {
	// Dir is the working directory, where the log goes too.
	Dir string
	// AsPostgres runs the server as the postgres user when we are root
	// (PostgreSQL refuses to run as root).
	AsPostgres bool
	// StopSignal asks for an orderly (or, for data thrown away, immediate)
	// shutdown; it is also sent if our process dies.
	StopSignal syscall.Signal
	// Env is added to our environment.
	Env []string
}

// Process is one running server. Stop or Kill ends it.
type Process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	stopSig syscall.Signal
	exited  chan struct{} // closed when the process has exited; waitErr is set before
	waitErr error
}

// Start starts bin with args in a process group of its own, its output
// going to NAME.log in o.Dir.
func Start(name string, o Options, bin string, args ...string) (*Process, error) {
	p := &Process{name: name, logPath: filepath.Join(o.Dir, name+".log"), stopSig: o.StopSignal,
		exited: make(chan struct{})}
	log, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	defer log.Close() // the child has its own copy
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = o.Dir, log, log
	cmd.Env = append(os.Environ(), o.Env...)
	// Pdeathsig is set after the credentials change in the child, so it
	// holds for a server run as postgres too. The group lets Kill reach
	// postgres's children.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: o.StopSignal, Setpgid: true}
	if o.AsPostgres {
		if cmd.SysProcAttr.Credential, err = PostgresCredential(); err != nil {
			return nil, err
		}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p.cmd = cmd
	go func() { // owned by p: Stop and Kill wait for exited
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Name is the name the process was started with.
func (p *Process) Name() string { return p.name }

// LogPath is where the server's output goes.
func (p *Process) LogPath() string { return p.logPath }

// WaitReady polls check until it succeeds, the server exits (ErrPortInUse
// if its log says its port was taken), ctx ends or ReadyTimeout passes; it
// kills the server on a timeout.
func (p *Process) WaitReady(ctx context.Context, check func(ctx context.Context) error) error {
	deadline := time.Now().Add(ReadyTimeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := check(cctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			tail := p.LogTail()
			if strings.Contains(tail, "already in use") {
				return fmt.Errorf("%s exited: %w", p.name, ErrPortInUse)
			}
			return fmt.Errorf("%s exited before it was ready (%v); its log ends:\n%s", p.name, p.waitErr, tail)
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", p.name, ctx.Err())
		case <-time.After(pollEvery):
		}
		if time.Now().After(deadline) {
			p.Kill()
			return fmt.Errorf("%s not ready after %v: %w; its log ends:\n%s", p.name, ReadyTimeout, err, p.LogTail())
		}
	}
}

// Stop shuts the server down with its stop signal, or kills it after
// StopTimeout. Stopping twice is fine.
func (p *Process) Stop() error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(p.stopSig) // it may be exiting already
	select {
	case <-p.exited:
		return nil
	case <-time.After(StopTimeout):
	}
	p.Kill()
	return fmt.Errorf("%s did not stop within %v after %v; killed", p.name, StopTimeout, p.stopSig)
}

// Kill ends the server and its process group at once and waits for it.
func (p *Process) Kill() {
	// A negative pid signals the whole process group (Setpgid above):
	// postgres's children too.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

// LogTail returns the end of the server's log, for failure messages.
func (p *Process) LogTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	const max = 3000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort() (uint16, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port), nil
}

// WithFreePort runs start on a free port, and again on another one if the
// port was taken meanwhile (start returned ErrPortInUse).
func WithFreePort(start func(port uint16) error) error {
	var err error
	for range portAttempts {
		var port uint16
		if port, err = FreePort(); err != nil {
			return err
		}
		if err = start(port); !errors.Is(err, ErrPortInUse) {
			return err
		}
	}
	return err
}
