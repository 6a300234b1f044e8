package dbproc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// script writes a shell script into dir and returns its path.
func script(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "server.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestWithFreePortRetriesTakenPort starts a server that, the first time,
// finds its port taken (as another process can take a free port before
// the server binds it): the second port must be tried, and the failure of
// the first must not surface.
func TestWithFreePortRetriesTakenPort(t *testing.T) {
	dir := t.TempDir()
	bin := script(t, dir, `echo "$1" >> ports
if [ "$(wc -l < ports)" -eq 1 ]; then echo "bind: Address already in use"; exit 1; fi
touch ready
exec sleep 60
`)
	var procs []*Process
	t.Cleanup(func() {
		for _, p := range procs {
			p.Kill()
		}
	})
	var ports []uint16
	err := WithFreePort(func(port uint16) error {
		ports = append(ports, port)
		p, err := Start("fake", Options{Dir: dir, StopSignal: syscall.SIGTERM}, bin, "x")
		if err != nil {
			return err
		}
		procs = append(procs, p)
		return p.WaitReady(t.Context(), func(context.Context) error {
			_, err := os.Stat(filepath.Join(dir, "ready"))
			return err
		})
	})
	if err != nil || len(ports) != 2 {
		t.Fatalf("WithFreePort: %v after %d ports, want success on the second", err, len(ports))
	}
	if err := procs[1].Stop(); err != nil {
		t.Error(err)
	}
}

// TestWaitReadyExited checks that a server dying before it is ready is
// reported with its log, and a taken port as ErrPortInUse.
func TestWaitReadyExited(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		port      bool
	}{
		{"port taken", "could not bind IPv4 address: Address already in use", true},
		{"other failure", "FATAL: data directory has wrong ownership", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p, err := Start("fake", Options{Dir: dir, StopSignal: syscall.SIGTERM}, script(t, dir, "echo '"+tc.out+"'; exit 1\n"))
			if err != nil {
				t.Fatal(err)
			}
			err = p.WaitReady(t.Context(), func(context.Context) error { return errors.New("not yet") })
			if errors.Is(err, ErrPortInUse) != tc.port || err == nil || !tc.port && !strings.Contains(err.Error(), tc.out) {
				t.Errorf("WaitReady: %v", err)
			}
		})
	}
}

// TestKillEndsGroup checks that Kill ends the server's children too, as
// postgres's backends must not outlive it.
func TestKillEndsGroup(t *testing.T) {
	dir := t.TempDir()
	p, err := Start("fake", Options{Dir: dir, StopSignal: syscall.SIGTERM},
		script(t, dir, "sleep 60 & echo $! > child; wait\n"))
	if err != nil {
		t.Fatal(err)
	}
	var child int
	deadline := time.Now().Add(10 * time.Second)
	for child == 0 {
		if b, err := os.ReadFile(filepath.Join(dir, "child")); err == nil && len(b) > 1 {
			for _, c := range strings.TrimSpace(string(b)) {
				child = child*10 + int(c-'0')
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the child never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.Kill()
	for alive(child) {
		if time.Now().After(deadline) {
			t.Fatalf("child %d still alive after Kill", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid runs: a zombie (killed, not yet reaped by
// whoever inherited it) does not.
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	_, after, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(after, "Z")
}
