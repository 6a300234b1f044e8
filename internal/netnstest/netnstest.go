// Package netnstest builds network namespaces for tests: hosts joined by
// veth pairs, whose addresses exist only inside the namespaces, so a test
// can run routers, several sluice hosts and clients on one machine without
// touching the host's own network.
//
//	ns := netnstest.New(t, "router")     // deleted when the test ends
//	netnstest.Link(t, a, "eth0", "10.9.0.1/24", b, "eth0", "10.9.0.2/24")
//	ns.Do(t, func() { ln, _ = net.Listen("tcp", "10.9.0.2:80") })
//
// It needs root and iproute2. Without them the test fails when CI=true (CI
// runs as root and make test-deps installs the tools) and is skipped
// elsewhere, so a developer without root can still run the rest.
package netnstest

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// Require checks that namespaces can be made here and that each of tools
// is on PATH: it fails t under CI=true, else skips it.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("network namespace test needs %s: run make test-deps as root", strings.Join(missing, ", "))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// NS is a named network namespace made by New.
type NS struct {
	// Name is the namespace's name under /run/netns.
	Name string
}

var (
	seq   atomic.Int64
	sweep sync.Once
)

// New makes a namespace with its loopback up and deletes it when the test
// ends. Names carry the process id so parallel test binaries never meet;
// the first call deletes those a test binary that died left behind.
func New(t testing.TB, name string) *NS {
	t.Helper()
	Require(t)
	sweep.Do(removeStale)
	ns := &NS{Name: fmt.Sprintf("sl%d-%d-%s", os.Getpid(), seq.Add(1), name)}
	run(t, "ip", "netns", "add", ns.Name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
			t.Errorf("deleting namespace %s: %v: %s", ns.Name, err, out)
		}
	})
	ns.Run(t, "ip", "link", "set", "lo", "up")
	return ns
}

// Run runs a command inside the namespace and fails t if it fails.
func (ns *NS) Run(t testing.TB, args ...string) string {
	t.Helper()
	return run(t, append([]string{"ip", "netns", "exec", ns.Name}, args...)...)
}

// Command returns a command that runs inside the namespace.
func (ns *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Link joins a and b with a veth pair named ifA in a and ifB in b, gives
// each end its address (a prefix such as "10.9.0.1/24"; "" for none) and
// brings both up.
func Link(t testing.TB, a *NS, ifA, addrA string, b *NS, ifB, addrB string) {
	t.Helper()
	// Made in a, so the host's namespace never holds either end.
	a.Run(t, "ip", "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", b.Name)
	for _, e := range []struct {
		ns        *NS
		dev, addr string
	}{{a, ifA, addrA}, {b, ifB, addrB}} {
		if e.addr != "" {
			e.ns.Run(t, "ip", "addr", "add", e.addr, "dev", e.dev)
		}
		e.ns.Run(t, "ip", "link", "set", e.dev, "up")
	}
}

// Do calls fn on a thread that is inside the namespace. Sockets fn makes
// belong to the namespace for their whole life, wherever they are used
// afterwards; goroutines fn starts run outside it.
func (ns *NS) Do(t testing.TB, fn func()) {
	t.Helper()
	if err := ns.Enter(fn); err != nil {
		t.Fatal(err)
	}
}

// Enter is Do returning its error, for goroutines other than the test's.
func (ns *NS) Enter(fn func()) error {
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("opening this thread's namespace: %w", err)
	}
	defer self.Close()
	target, err := os.Open("/run/netns/" + ns.Name)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("opening namespace %s: %w", ns.Name, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering namespace %s: %w", ns.Name, err)
	}
	fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked and dies with this goroutine rather
		// than run other goroutines inside the namespace.
		return fmt.Errorf("leaving namespace %s: %w", ns.Name, err)
	}
	runtime.UnlockOSThread()
	return nil
}

// staleRE matches this package's namespace names, with their creator's pid.
var staleRE = regexp.MustCompile(`^sl(\d+)-\d+-`)

// removeStale deletes namespaces this package made in processes that no
// longer run (a test binary killed by its timeout runs no cleanup).
func removeStale() {
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		m := staleRE.FindStringSubmatch(e.Name())
		if m == nil || m[1] == strconv.Itoa(os.Getpid()) {
			continue
		}
		if _, err := os.Stat("/proc/" + m[1]); err == nil {
			continue // its test binary still runs
		}
		exec.Command("ip", "netns", "del", e.Name()).Run()
	}
}

func run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
