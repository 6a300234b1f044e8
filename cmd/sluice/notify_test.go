package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A Unix datagram socket stands in for systemd: sluice says READY=1 once
// serving, RELOADING=1 (with MONOTONIC_USEC) then READY=1 around a
// reload, and STOPPING=1 when it shuts down.
func TestSystemdNotifications(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addr := freePort(t)
	p := &process{cmd: exec.Command(bin, "-c", writeFile(t, simpleConfig(addr, echoBackend(t), "1s"))),
		out: &lockedBuffer{}, done: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	next := func() string {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v; output:\n%s", err, p.out)
		}
		return string(buf[:n])
	}
	if got := next(); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	if got := next(); !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Fatalf("notification at reload %q", got)
	}
	if got := next(); got != "READY=1" {
		t.Fatalf("notification after reload %q, want READY=1", got)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if got := next(); got != "STOPPING=1" {
		t.Fatalf("notification at shutdown %q, want STOPPING=1", got)
	}
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit %d; output:\n%s", code, p.out)
	}
}
