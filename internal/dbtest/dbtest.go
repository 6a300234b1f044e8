// Package dbtest starts real Redis, PostgreSQL and MariaDB servers (and nginx, as an
// HTTP backend) for tests, each on a free loopback port with its files in a temporary
// directory, and stops them when the test ends.
//
//	pg := dbtest.StartPostgres(t)        // SCRAM password login on pg.Addr
//	standby := dbtest.StartStandby(t, pg) // a hot standby made with pg_basebackup -R
//	standby.Promote(t)
//
// A missing server binary fails the test: make test installs them, and a test must
// never pass by skipping what it exists to check. Servers are started as children of the
// test process with a parent-death signal, so a test binary that dies (a timeout panic)
// takes them with it. A failed test logs the end of its servers' logs; DBTEST_LOGS=1 logs
// them for every test. Running the processes is internal/dbproc's, shared with the bench;
// this package adds what tests want: testing.TB, SCRAM logins, replicas.
package dbtest

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"sluice/internal/dbproc"
)

// How often a condition of a server (a replication link) is polled; the
// deadline is dbproc.ReadyTimeout.
const pollEvery = 20 * time.Millisecond

// cleanup stops s when t ends; if t failed it logs the server's log first.
func cleanup(t testing.TB, s *dbproc.Process) {
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("DBTEST_LOGS") != "" {
			t.Logf("%s log (%s) ends:\n%s", s.Name(), s.LogPath(), s.LogTail())
		}
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
}

// loopback returns 127.0.0.1:port.
func loopback(port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port)
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
		if err := dbproc.ChownPostgres(dir); err != nil {
			t.Fatalf("dbtest: %v", err)
		}
	}
	return dir
}
