package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cpuTicks returns the user+system clock ticks pid has used.
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which is in parentheses: utime and
	// stime are the 14th and 15th fields of the whole line.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return ut + st
}

// TestFDLimitCapsConnections runs sluice with a small fd limit and more
// clients than it allows: the ones past the cap derived from the limit must
// wait in the accept queue, cheaply, and be served once others leave,
// rather than be accepted and then fail to reach a backend.
func TestFDLimitCapsConnections(t *testing.T) {
	addr := freePort(t)
	cfg := writeFile(t, simpleConfig(addr, echoBackend(t), "1s"))
	p := startSluice(t, []string{"sh", "-c", `ulimit -n 128 && exec "$0" "$@"`}, "-c", cfg)
	p.waitOutput(t, "listening")
	p.waitOutput(t, "connections capped by the file descriptor limit")

	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	served := 0
	for range 60 {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	// The first ones are served until the cap; count greetings.
	buf := make([]byte, 6)
	deadline := time.Now().Add(time.Second)
	for _, c := range held {
		c.SetReadDeadline(deadline)
		if _, err := io.ReadFull(c, buf); err == nil {
			served++
		}
	}
	if served == 0 || served >= 60 {
		t.Fatalf("%d of 60 clients served with ulimit -n 128; want some, not all", served)
	}
	start := cpuTicks(t, p.cmd.Process.Pid)
	time.Sleep(time.Second) // the interval over which CPU use is measured
	// 100 ticks a second is a whole core; waiting clients cost ~none.
	if used := cpuTicks(t, p.cmd.Process.Pid) - start; used > 20 {
		t.Fatalf("sluice used %d ticks in 1s with clients waiting", used)
	}
	// Free the slots: the client that waited longest must now be served.
	last := held[len(held)-1]
	for _, c := range held[:len(held)-1] {
		c.Close()
	}
	held = held[len(held)-1:]
	last.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(last, buf); err != nil || string(buf) != "hello\n" {
		t.Fatalf("last client got %q, %v; output:\n%s", buf, err, p.out)
	}
	if strings.Contains(p.out.String(), "connect_failed") {
		t.Fatalf("a client was accepted and then failed:\n%s", p.out)
	}
	fmt.Fprintln(last, "x")
}
