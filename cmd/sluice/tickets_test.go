package main

// Session ticket keys shared across listeners (as across hosts): openssl
// s_client saves a session from one and resumes it on the other.

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// resumes connects to addr with openssl s_client, resuming the session in
// sess if it exists and saving the one it ends with there; it reports
// whether the session was resumed ("Reused").
func resumes(t *testing.T, addr, caFile, sess, version string) bool {
	t.Helper()
	args := []string{"s_client", "-connect", addr, "-servername", "a.test", "-CAfile", caFile, "-verify_return_error",
		version, "-sess_out", sess, "-ign_eof"}
	if _, err := os.Stat(sess); err == nil {
		args = append(args, "-sess_in", sess)
	}
	cmd := exec.Command(need(t, "openssl", "openssl"), args...)
	// A whole exchange, so that s_client reads the tickets TLS 1.3 sends
	// after the handshake before the server closes.
	cmd.Stdin = strings.NewReader("GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "backend HTTP/1.1") {
		t.Fatalf("s_client to %s: %v\n%s", addr, err, out)
	}
	switch {
	case strings.Contains(string(out), "\nReused, "):
		return true
	case strings.Contains(string(out), "\nNew, "):
		return false
	}
	t.Fatalf("s_client to %s says neither New nor Reused:\n%s", addr, out)
	return false
}

func writeTicketKeys(t *testing.T, path string, keys ...string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(strings.Join(keys, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func newTicketKey() string {
	b := make([]byte, 80)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// TestSharedTicketKeys: two listeners (HTTPS, and TLS in front of TCP)
// with the same ticket_key_file resume each other's sessions, a third with keys of its
// own does not; a file rotated with the previous key kept second still
// resumes sessions made under it; one without it does not.
func TestSharedTicketKeys(t *testing.T) {
	f := newTLSFixture(t)
	keys := filepath.Join(t.TempDir(), "ticket.keys")
	old := newTicketKey()
	writeTicketKeys(t, keys, old)
	a, b, own := freeDualPort(t), freeDualPort(t), freeDualPort(t)
	web := startTLSWeb(t)
	var cfg strings.Builder
	for _, l := range []struct{ name, addr, protocol, tickets string }{
		{"a", a, "http", fmt.Sprintf("ticket_key_file = %q\nreload_interval = \"100ms\"\n", keys)},
		// TLS in front of a TCP service shares the keys as well.
		{"b", b, "tcp", fmt.Sprintf("ticket_key_file = %q\nreload_interval = \"100ms\"\n", keys)},
		{"own", own, "http", "ticket_rotation = \"1h\"\n"},
	} {
		fmt.Fprintf(&cfg, "[listeners.%s]\nbind = %q\nprotocol = %q\npool = \"web\"\n[listeners.%s.tls]\ncert_file = %q\nkey_file = %q\n%s\n",
			l.name, l.addr, l.protocol, l.name, f.a.CertFile, f.a.KeyFile, l.tickets)
	}
	fmt.Fprintf(&cfg, "[pools.web]\n[[pools.web.backends]]\naddress = %q\n", web.String())
	p := startSluiceEnv(t, nil, "-c", writeFile(t, cfg.String()))
	p.waitOutput(t, "msg=listening")

	for _, version := range []string{"-tls1_3", "-tls1_2"} {
		t.Run(version, func(t *testing.T) {
			dir := t.TempDir()
			sess := filepath.Join(dir, "sess")
			if resumes(t, a, f.caFile, sess, version) {
				t.Fatal("a first connection resumed")
			}
			if !resumes(t, b, f.caFile, sess, version) {
				t.Error("listener b did not resume a session from a, with the same key file")
			}
			if resumes(t, own, f.caFile, sess, version) {
				t.Error("a listener with keys of its own resumed a session from a")
			}
			// own's session is its own: it resumes it.
			if !resumes(t, own, f.caFile, sess, version) {
				t.Error("a listener with in-memory keys did not resume its own session")
			}
		})
	}

	// Rotation: a new key first, the previous one kept.
	sess := filepath.Join(t.TempDir(), "sess")
	resumes(t, a, f.caFile, sess, "-tls1_3")
	rotate := func(keyLines ...string) {
		t.Helper()
		before := strings.Count(p.out.String(), "session ticket keys reloaded")
		writeTicketKeys(t, keys, keyLines...)
		waitFor(t, 10*time.Second, "both listeners reload the keys", func() bool {
			return strings.Count(p.out.String(), "session ticket keys reloaded") >= before+2
		})
	}
	rotate(newTicketKey(), old)
	if !resumes(t, b, f.caFile, sess, "-tls1_3") {
		t.Error("after a rotation, a session under the previous key was not resumed")
	}
	// The previous key dropped: sessions under it end.
	sess = filepath.Join(t.TempDir(), "sess")
	resumes(t, a, f.caFile, sess, "-tls1_3")
	rotate(newTicketKey())
	if resumes(t, b, f.caFile, sess, "-tls1_3") {
		t.Error("a session under a key no longer in the file was resumed")
	}
}
