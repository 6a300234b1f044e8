// Package dbtest starts real Redis, PostgreSQL and MariaDB servers for tests, each on a
// free loopback port with its files in a temporary directory, and stops them when the
// test ends.
//
//	pg := dbtest.StartPostgres(t)        // SCRAM password login on pg.Addr
//	standby := dbtest.StartStandby(t, pg) // a hot standby made with pg_basebackup -R
//	standby.Promote(t)
//
// A missing server binary fails the test: make test installs them, and a test must
// never pass by skipping what it exists to check. Servers are started as children of the
// test process with a parent-death signal, so a test binary that dies (a timeout panic)
// takes them with it. A failed test logs the end of its servers' logs; DBTEST_LOGS=1 logs
// them for every test.
package dbtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Timeouts for starting and stopping a server. Generous: CI runs test packages in
// parallel on two shared cores.
const (
	readyTimeout = 60 * time.Second
	stopTimeout  = 20 * time.Second
	pollEvery    = 20 * time.Millisecond
	portAttempts = 3 // a free port can be taken by another test binary before we bind it
)

// errPortInUse means a server exited because its port was taken before it bound it.
var errPortInUse = errors.New("dbtest: port already in use")

// server is one database process started by a test.
type server struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	stopSig syscall.Signal // the signal for an orderly shutdown
	exited  chan struct{}  // closed when the process has exited; waitErr is set before
	waitErr error
}

// procOptions say how to run a server process.
type procOptions struct {
	dir        string         // working directory, also where its log goes
	asPostgres bool           // run as the postgres user when we are root
	stopSig    syscall.Signal // orderly shutdown; also sent if the test process dies
	env        []string       // extra environment
}

// startServer starts bin with args, its output going to a log file in o.dir.
func startServer(name string, o procOptions, bin string, args ...string) (*server, error) {
	s := &server{name: name, logPath: o.dir + "/" + name + ".log", stopSig: o.stopSig,
		exited: make(chan struct{})}
	log, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	defer log.Close() // the child has its own copy
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = o.dir, log, log
	cmd.Env = append(os.Environ(), o.env...)
	// Pdeathsig is set after the credentials change in the child, so it holds for a
	// server run as postgres too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: o.stopSig, Setpgid: true}
	if o.asPostgres {
		if cmd.SysProcAttr.Credential, err = postgresCredential(); err != nil {
			return nil, err
		}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	s.cmd = cmd
	go func() { // owned by s: stop waits for exited
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	return s, nil
}

// waitReady polls check until it succeeds, the server exits, or readyTimeout passes.
func (s *server) waitReady(check func(ctx context.Context) error) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := check(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-s.exited:
			tail := s.logTail()
			if strings.Contains(tail, "already in use") {
				return fmt.Errorf("%s exited: %w", s.name, errPortInUse)
			}
			return fmt.Errorf("%s exited before it was ready (%v); its log ends:\n%s",
				s.name, s.waitErr, tail)
		case <-time.After(pollEvery):
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("%s not ready after %v: %w; its log ends:\n%s",
				s.name, readyTimeout, err, s.logTail())
		}
	}
}

// stop shuts the server down in order, or kills it after stopTimeout.
func (s *server) stop() error {
	select {
	case <-s.exited:
		return nil
	default:
	}
	_ = s.cmd.Process.Signal(s.stopSig) // it may be exiting already
	select {
	case <-s.exited:
		return nil
	case <-time.After(stopTimeout):
	}
	s.kill()
	return fmt.Errorf("%s did not stop within %v after %v; killed", s.name, stopTimeout, s.stopSig)
}

// kill ends the server and its process group at once and waits for it.
func (s *server) kill() {
	// A negative pid signals the whole process group (Setpgid above): postgres's
	// children too.
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.exited
}

// logTail returns the end of the server's log, for failure messages.
func (s *server) logTail() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return err.Error()
	}
	const max = 3000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// cleanup stops s when t ends; if t failed it logs the server's log first.
func cleanup(t testing.TB, s *server) {
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("DBTEST_LOGS") != "" {
			t.Logf("%s log (%s) ends:\n%s", s.name, s.logPath, s.logTail())
		}
		if err := s.stop(); err != nil {
			t.Error(err)
		}
	})
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (uint16, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port), nil
}

// loopback returns 127.0.0.1:port.
func loopback(port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port)
}

// withFreePort runs start on a free port, and again on another one if the port was
// taken meanwhile.
func withFreePort(start func(port uint16) error) error {
	var err error
	for range portAttempts {
		var port uint16
		if port, err = freePort(); err != nil {
			return err
		}
		if err = start(port); !errors.Is(err, errPortInUse) {
			return err
		}
	}
	return err
}

// lookBin finds a server binary in the given directories, else on PATH.
func lookBin(name string, dirs ...string) (string, error) {
	for _, d := range dirs {
		if p := d + "/" + name; isExecutable(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("dbtest: %s not found in %v or on PATH: run make test-deps", name, dirs)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// tempDir makes a directory for one server, removed when t ends (after the server has
// stopped: cleanups run last in, first out). It is owned by the postgres user if
// asPostgres and we are root. It is not under t.TempDir, which is private to root.
func tempDir(t testing.TB, name string, asPostgres bool) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sluice-"+name+"-")
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Error(err)
		}
	})
	if asPostgres {
		if err := chownPostgres(dir); err != nil {
			t.Fatalf("dbtest: %v", err)
		}
	}
	return dir
}
