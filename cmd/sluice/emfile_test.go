package main

import (
	"fmt"
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

// TestOutOfFDsBacksOff runs sluice with a tiny fd limit and more clients
// than it can hold: accept fails with EMFILE, and sluice must back off
// instead of spinning, then serve the waiting clients once fds free up.
func TestOutOfFDsBacksOff(t *testing.T) {
	addr := freePort(t)
	cfg := writeFile(t, simpleConfig(addr, echoBackend(t), "1s"))
	p := startSluice(t, []string{"sh", "-c", `ulimit -n 32 && exec "$0" "$@"`}, "-c", cfg)
	p.waitOutput(t, "listening")

	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 40 {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	p.waitOutput(t, "accept failed")
	start := cpuTicks(t, p.cmd.Process.Pid)
	time.Sleep(time.Second) // the interval over which CPU use is measured
	used := cpuTicks(t, p.cmd.Process.Pid) - start
	// 100 ticks a second is a whole core; a backing-off loop uses ~none.
	if used > 20 {
		t.Fatalf("sluice used %d ticks in 1s while out of fds: the accept loop spins", used)
	}
	// Free the fds: the client that waited longest in the accept queue
	// must now be served.
	last := held[len(held)-1]
	for _, c := range held[:len(held)-1] {
		c.Close()
	}
	held = held[len(held)-1:]
	last.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 6)
	if _, err := last.Read(buf); err != nil || string(buf) != "hello\n" {
		t.Fatalf("last client got %q, %v; output:\n%s", buf, err, p.out)
	}
	fmt.Fprintln(last, "x")
}
