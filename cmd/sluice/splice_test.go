package main

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBytesMoveBySplice counts sluice's system calls under strace while 32
// MiB go through it each way: the payload must move by splice(2), not by
// read/write through user space.
func TestBytesMoveBySplice(t *testing.T) {
	if _, err := exec.LookPath("strace"); err != nil {
		t.Fatal("strace is needed to count splice calls (make test installs it): ", err)
	}
	addr := freePort(t)
	summary := filepath.Join(t.TempDir(), "strace.txt")
	p := startSluice(t, []string{"strace", "-f", "-c", "-o", summary,
		"-e", "trace=splice,read,write,recvfrom,sendto,readv,writev,recvmsg,sendmsg"},
		"-c", writeFile(t, simpleConfig(addr, echoBackend(t), "1s")))
	p.waitOutput(t, "listening")

	c, r, _ := dialLine(t, addr)
	payload := make([]byte, 32<<20)
	rand.Read(payload)
	c.SetDeadline(time.Now().Add(60 * time.Second))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("echo through sluice differs: %d bytes, want %d", len(got), len(payload))
	}
	c.Close()

	// Stop sluice itself (strace's child); strace then writes its summary.
	pid := childOf(t, p.cmd.Process.Pid)
	syscall.Kill(pid, syscall.SIGTERM)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit %d; output:\n%s", code, p.out)
	}
	calls := straceCalls(t, summary)
	t.Logf("system calls for 64 MiB proxied: %v", calls)
	copies := 0
	for name, n := range calls {
		if name != "splice" {
			copies += n
		}
	}
	// Each 64 KiB..1 MiB chunk is two splices. A copy through user space
	// would need a read and a write per chunk of at most 64 KiB (the
	// loop's buffer): 2048 calls at least. Each burst starts with one
	// recv and send through the buffer before it switches to splice, and
	// a busy machine cuts a stream into more bursts, so the bound is on
	// the calls themselves, not on their ratio to splices (340 splices of
	// up to 1 MiB against 91 calls failed that ratio once, with 97% of
	// the bytes spliced).
	const userCopyCalls = 2 * (64 << 20) / (64 << 10)
	if calls["splice"] < 64 {
		t.Fatalf("%d splice calls for 64 MiB", calls["splice"])
	}
	if copies > userCopyCalls/8 {
		t.Fatalf("%d read/write-family calls (a user-space copy makes %d) against %d splices: bytes went through user space",
			copies, userCopyCalls, calls["splice"])
	}
}

// childOf returns the pid of the (only) child of pid.
func childOf(t *testing.T, pid int) int {
	t.Helper()
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		if fields := strings.Fields(string(b)); len(fields) > 0 {
			child, err := strconv.Atoi(fields[0])
			if err == nil {
				return child
			}
		}
	}
	t.Fatalf("no child process of %d", pid)
	return 0
}

// straceCalls parses the call counts of an `strace -c` summary.
func straceCalls(t *testing.T, path string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		// % time, seconds, usecs/call, calls, [errors,] syscall
		if len(f) < 5 || f[len(f)-1] == "total" || f[len(f)-1] == "syscall" {
			continue
		}
		if n, err := strconv.Atoi(f[3]); err == nil {
			calls[f[len(f)-1]] = n
		}
	}
	if len(calls) == 0 {
		t.Fatalf("no system call counts in strace's summary:\n%s", b)
	}
	return calls
}

// TestSpliceAfterProxyHeaders is TestBytesMoveBySplice on a listener that
// reads a PROXY header from the client and a pool that sends one to the
// backend: the headers must not move the payload off splice(2).
func TestSpliceAfterProxyHeaders(t *testing.T) {
	if _, err := exec.LookPath("strace"); err != nil {
		t.Fatal("strace is needed to count splice calls (make test installs it): ", err)
	}
	addr := freePort(t)
	summary := filepath.Join(t.TempDir(), "strace.txt")
	cfg := simpleConfig(addr, echoBackend(t), "1s")
	cfg = strings.Replace(cfg, "sockets = 2\n", "sockets = 2\nproxy_protocol = \"v1\"\nproxy_protocol_from = [\"127.0.0.1\"]\n", 1)
	cfg = strings.Replace(cfg, "[pools.p]\n", "[pools.p]\nsend_proxy = \"v2\"\n", 1)
	p := startSluice(t, []string{"strace", "-f", "-c", "-o", summary,
		"-e", "trace=splice,read,write,recvfrom,sendto,readv,writev,recvmsg,sendmsg"},
		"-c", writeFile(t, cfg))
	p.waitOutput(t, "listening")

	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	header := "PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n"
	payload := make([]byte, 32<<20)
	rand.Read(payload)
	c.SetDeadline(time.Now().Add(60 * time.Second))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(append([]byte(header), payload...))
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// The echo backend says hello, then echoes sluice's v2 header and the
	// payload; the client's v1 header was consumed by sluice.
	rest, ok := bytes.CutPrefix(got, []byte("hello\n\r\n\r\n\x00\r\nQUIT\n\x21\x11"))
	if !ok || !bytes.HasSuffix(rest, payload) || bytes.Contains(got, []byte(header)) {
		t.Fatalf("echo through sluice: %d bytes starting %q, want hello, a v2 header and the payload", len(got), got[:min(len(got), 40)])
	}
	c.Close()
	pid := childOf(t, p.cmd.Process.Pid)
	syscall.Kill(pid, syscall.SIGTERM)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit %d; output:\n%s", code, p.out)
	}
	if !strings.Contains(p.out.String(), "client=203.0.113.7:5555") {
		t.Errorf("log does not name the header's client:\n%s", p.out)
	}
	calls := straceCalls(t, summary)
	t.Logf("system calls for 64 MiB proxied after PROXY headers: %v", calls)
	copies := 0
	for name, n := range calls {
		if name != "splice" {
			copies += n
		}
	}
	if calls["splice"] < 64 || copies > calls["splice"]/4 {
		t.Fatalf("%d splice calls against %d read/write-family calls: bytes went through user space", calls["splice"], copies)
	}
}
