package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// proxyProc is a running proxy; the bench owns it and stops it.
type proxyProc struct {
	sys     *system
	addr    string
	relays  []relay
	params  proxyParams
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has been waited for
	waitErr error
}

// startProxy writes sys's config into p.dir, starts bin (under taskset when
// cpus is not empty) and waits until a connection through it reaches the
// backend.
func startProxy(ctx context.Context, sys *system, bin string, p proxyParams, cpus string) (*proxyProc, error) {
	cfg := filepath.Join(p.dir, sys.file)
	if err := os.WriteFile(cfg, []byte(sys.config(p)), 0o644); err != nil {
		return nil, fmt.Errorf("writing %s config: %w", sys.name, err)
	}
	argv := sys.argv(bin, cfg, p)
	if cpus != "" {
		argv = append([]string{"taskset", "-c", cpus}, argv...)
	}
	logPath := filepath.Join(p.dir, sys.key+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating %s log: %w", sys.name, err)
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = os.Environ()
	if sys.env != nil {
		cmd.Env = append(cmd.Env, sys.env(p)...)
	}
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", sys.name, err)
	}
	pp := &proxyProc{sys: sys, addr: p.listen, relays: p.relays, params: p, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { // joined by stop, which waits on done
		pp.waitErr = cmd.Wait()
		close(pp.done)
	}()
	if err := pp.waitReady(ctx, 10*time.Second); err != nil {
		pp.stop()
		return nil, err
	}
	return pp, nil
}

// waitReady polls until one echo through the proxy succeeds.
func (pp *proxyProc) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		err := probe(pp.addr)
		if err == nil {
			return nil
		}
		select {
		case <-pp.done:
			return fmt.Errorf("starting %s: exited (%v): %s", pp.sys.name, pp.waitErr, tail(pp.logPath))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("starting %s: not ready after %v: %w: %s", pp.sys.name, limit, err, tail(pp.logPath))
		}
	}
}

// probe makes one echo exchange with the backend through addr.
func probe(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte{modeEcho, 'x'}); err != nil {
		return err
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		return fmt.Errorf("probing %s: %w", addr, err)
	}
	return nil
}

// pid is the proxy's process id; the usage of its descendants counts too.
func (pp *proxyProc) pid() int { return pp.cmd.Process.Pid }

// stop asks the proxy's process group to terminate, kills it after five
// seconds, and reports an unclean exit.
func (pp *proxyProc) stop() error {
	pgid := pp.cmd.Process.Pid // the child leads its own group (childAttr)
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-pp.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-pp.done
		return fmt.Errorf("stopping %s: killed after 5s", pp.sys.name)
	}
	// Workers that outlived their master would keep ports and fds.
	syscall.Kill(-pgid, syscall.SIGKILL)
	if !cleanExit(pp.waitErr) {
		return fmt.Errorf("stopping %s: %w: %s", pp.sys.name, pp.waitErr, tail(pp.logPath))
	}
	return nil
}

// cleanExit accepts status 0 and death by the SIGTERM that stop sent:
// HAProxy in foreground mode does not catch SIGTERM.
func cleanExit(err error) bool {
	var ee *exec.ExitError
	if err == nil {
		return true
	}
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM
}

// tail returns the last lines of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 600 {
		s = "..." + s[len(s)-600:]
	}
	return s
}
