package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/internal/admin"
)

// After an upgrade through the admin API, the old process stops accepting
// on the admin socket it shares with the new one as soon as its drain
// begins, not when the drain ends: a request still in flight on its HTTP
// listener keeps it draining here, and meanwhile every API call and
// scrape must reach the process that serves.
func TestUpgradedProcessLeavesTheAdminSocket(t *testing.T) {
	held := make(chan struct{})
	arrived := make(chan struct{}, 1)
	slow := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-held
		fmt.Fprintln(w, "late")
	})}
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { slow.Serve(sl) })
	release := sync.OnceFunc(func() { close(held) })
	t.Cleanup(func() { release(); slow.Close(); wg.Wait() })

	addr, adm, web := freePort(t), freePort(t), freePort(t)
	dir := t.TempDir()
	extra := fmt.Sprintf(`pid_file = %q
[admin]
bind = %q
[listeners.web]
bind = %q
protocol = "http"
[[listeners.web.routes]]
pool = "slow"
[pools.slow]
[[pools.slow.backends]]
address = %q
`, pidFileFor(dir), adm, web, sl.Addr().String())
	l := startLineage(t, dir, reloadConfig(addr, "round_robin", "10m", extra, echoBackend(t)))
	old := l.pidOr0()
	admInode := listeningInode(t, adm)

	inFlight := make(chan error, 1)
	wg.Go(func() {
		resp, err := http.Get("http://" + web + "/")
		if err == nil {
			resp.Body.Close()
		}
		inFlight <- err
	})
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the backend")
	}

	api := adminClient{t: t, base: "http://" + adm}
	code, b := api.do(http.MethodPost, "/api/v1/upgrade", "")
	var r admin.UpgradeJSON
	if json.Unmarshal(b, &r); code != http.StatusOK || r.Result != "ok" {
		t.Fatalf("upgrade: %d %s", code, b)
	}
	waitFor(t, 5*time.Second, "the old process to leave the admin socket while it drains", func() bool {
		return !holdsSocket(old, admInode)
	})
	if gone(old) {
		t.Fatal("the old process exited: the held request should have kept it draining")
	}
	release()
	if err := <-inFlight; err != nil {
		t.Errorf("the request in flight across the upgrade: %v", err)
	}
	waitFor(t, 30*time.Second, "the old process to exit", func() bool { return gone(old) })
}

// listeningInode returns the inode of the TCP socket listening on addr
// (an IPv4 address), from /proc/net/tcp.
func listeningInode(t *testing.T, addr string) string {
	t.Helper()
	ap := netip.MustParseAddrPort(addr)
	a4 := ap.Addr().As4()
	// /proc/net/tcp writes the address as a host-order (little-endian)
	// 32-bit number, the port big-endian.
	local := fmt.Sprintf("%02X%02X%02X%02X:%04X", a4[3], a4[2], a4[1], a4[0], ap.Port())
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 9 && f[1] == local && f[3] == "0A" { // TCP_LISTEN
			return f[9]
		}
	}
	t.Fatalf("no socket listening on %s", addr)
	return ""
}

// holdsSocket reports whether process pid has a descriptor of the socket
// with inode.
func holdsSocket(pid int, inode string) bool {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && target == "socket:["+inode+"]" {
			return true
		}
	}
	return false
}
