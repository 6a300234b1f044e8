package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// A reload applies a UDP listener's own settings to its running proxy:
// the live flow keeps its session (not admitted again, same backend), new
// flows meet the new deny list, and the live session expires at the new
// session_timeout.
func TestReloadAppliesUDPListenerSettings(t *testing.T) {
	echo, uaddr := udpEcho(t), freePort(t)
	conf := func(extra string) string {
		return fmt.Sprintf(`[log]
format = "json"
[listeners.u]
bind = %q
protocol = "udp"
pool = "q"
%s
[pools.q]
[[pools.q.backends]]
address = %q
`, uaddr, extra, echo)
	}
	path := writeFile(t, conf(`session_timeout = "1m"`))
	d, log := inProcessReload(t, path)
	live := dialUDP(t, uaddr)
	if got := exchange(t, live, "one"); got != "one" {
		t.Fatalf("udp reply %q", got)
	}

	os.WriteFile(path, []byte(conf("session_timeout = \"300ms\"\ndeny = [\"127.0.0.0/8\"]")), 0o644)
	if err := d.reload(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), `"msg":"listener settings applied","listener":"u"`) {
		t.Errorf("no line saying the settings were applied")
	}
	if got := exchange(t, live, "two"); got != "two" {
		t.Fatalf("live flow after the reload: reply %q", got)
	}
	fresh := dialUDP(t, uaddr)
	fresh.Write([]byte("denied"))
	fresh.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := fresh.Read(make([]byte, 64)); err == nil {
		t.Fatalf("a new flow from a denied client got a %d-byte reply", n)
	}
	waitFor(t, 10*time.Second, "the live session to expire at the new session_timeout", func() bool {
		return strings.Contains(log.String(), `"end":"idle_timeout"`)
	})
}
