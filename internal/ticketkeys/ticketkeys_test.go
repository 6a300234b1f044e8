package ticketkeys

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"sluice/internal/certs/mint"
)

// fixture is a certificate for a.test and its CA.
type fixture struct {
	cert  tls.Certificate
	roots *x509.CertPool
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	ca, err := mint.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Issue(t.TempDir(), "a", mint.ECDSA, "a.test")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(pair.CertFile, pair.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return fixture{cert, roots}
}

// serve runs a TLS server with k's keys on loopback, which answers each
// connection with one byte; cleanup stops it.
func (f fixture) serve(t *testing.T, k *Keys, version uint16) string {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{f.cert}, MinVersion: version, MaxVersion: version}
	k.Apply(cfg)
	cfg = cfg.Clone() // as l7 does: the keys must follow
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("x"))
			c.Close()
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// resumed connects to addr with the client's session cache and reports
// whether the session was resumed.
func (f fixture) resumed(t *testing.T, addr string, cache tls.ClientSessionCache) bool {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "a.test", RootCAs: f.roots, ClientSessionCache: cache})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Reading takes in the ticket TLS 1.3 sends after the handshake.
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	return c.ConnectionState().DidResume
}

// keyFile writes keys (raw bytes, base64 encoded one per line) to a file.
func keyFile(t *testing.T, path string, keys ...[]byte) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("# session ticket keys\n\n")
	for _, k := range keys {
		b.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func randKey(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func newKeys(t *testing.T, o Options) *Keys {
	t.Helper()
	o.Logger = slog.New(slog.DiscardHandler)
	k, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSharedFile: two servers with the same key file resume each other's
// sessions; with keys of their own they do not. A file rotated (a new key
// first, the old one kept) still resumes the old sessions and one without
// the old key does not.
func TestSharedFile(t *testing.T) {
	f := newFixture(t)
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			dir := t.TempDir()
			old := randKey(80)
			file := keyFile(t, filepath.Join(dir, "keys"), old)
			a := newKeys(t, Options{File: file})
			b := newKeys(t, Options{File: file})
			addrA, addrB := f.serve(t, a, version), f.serve(t, b, version)
			own := f.serve(t, newKeys(t, Options{}), version)

			cache := tls.NewLRUClientSessionCache(4)
			if f.resumed(t, addrA, cache) {
				t.Fatal("resumed a first connection")
			}
			if !f.resumed(t, addrB, cache) {
				t.Error("a session from A not resumed by B, which shares its key file")
			}
			if f.resumed(t, own, tls.NewLRUClientSessionCache(4)) || f.resumed(t, own, cache) {
				// The second call: a ticket of A's key, which own lacks.
				t.Error("a server with keys of its own resumed a session from A")
			}

			// Rotated: a new key first; the old one still decrypts.
			cache = tls.NewLRUClientSessionCache(4)
			f.resumed(t, addrA, cache)
			keyFile(t, filepath.Join(dir, "new"), randKey(48), old)
			if err := os.Rename(filepath.Join(dir, "new"), file); err != nil {
				t.Fatal(err)
			}
			b.reload()
			if !f.resumed(t, addrB, cache) {
				t.Error("after a rotation, a session under the previous key not resumed")
			}
			// The old key dropped: its sessions end.
			cache = tls.NewLRUClientSessionCache(4)
			f.resumed(t, addrA, cache)
			keyFile(t, filepath.Join(dir, "new"), randKey(48))
			os.Rename(filepath.Join(dir, "new"), file)
			b.reload()
			if f.resumed(t, addrB, cache) {
				t.Error("a session under a key no longer in the file resumed")
			}
		})
	}
}

// TestRotation: in memory, a rotation keeps the previous key decrypting;
// a second one drops it.
func TestRotation(t *testing.T) {
	f := newFixture(t)
	k := newKeys(t, Options{})
	addr := f.serve(t, k, tls.VersionTLS13)
	cache := tls.NewLRUClientSessionCache(4)
	f.resumed(t, addr, cache)
	k.rotate()
	if !f.resumed(t, addr, cache) {
		t.Error("not resumed after one rotation")
	}
	// That resumption's new ticket is under the new key; make one more
	// under the old one to drop.
	old := tls.NewLRUClientSessionCache(4)
	k2 := newKeys(t, Options{})
	addr2 := f.serve(t, k2, tls.VersionTLS13)
	f.resumed(t, addr2, old)
	k2.rotate()
	k2.rotate()
	if f.resumed(t, addr2, old) {
		t.Error("resumed after two rotations")
	}
}

// TestBadFileKeepsKeys: a file that fails to load leaves the keys in use;
// New refuses one.
func TestBadFileKeepsKeys(t *testing.T) {
	f := newFixture(t)
	file := keyFile(t, filepath.Join(t.TempDir(), "keys"), randKey(32))
	k := newKeys(t, Options{File: file})
	addr := f.serve(t, k, tls.VersionTLS13)
	cache := tls.NewLRUClientSessionCache(4)
	f.resumed(t, addr, cache)
	os.WriteFile(file, []byte("not base64!\n"), 0o600)
	k.reload()
	if !f.resumed(t, addr, cache) {
		t.Error("a bad file replaced the keys")
	}
	if _, err := New(Options{File: file}); err == nil || !strings.Contains(err.Error(), "line 1: not base64") {
		t.Errorf("New with a bad file: %v", err)
	}
}

func TestParse(t *testing.T) {
	k32 := base64.StdEncoding.EncodeToString(randKey(32))
	for _, tc := range []struct {
		name, text string
		keys       int
		err        string
	}{
		{"one", k32 + "\n", 1, ""},
		{"unpadded, comments, CRLF", "# keys\r\n\r\n" + strings.TrimRight(base64.StdEncoding.EncodeToString(randKey(80)), "=") + "\r\n" + k32, 2, ""},
		{"short", base64.StdEncoding.EncodeToString(randKey(31)), 0, "line 1: a key of 31 bytes, want 32 or more"},
		{"not base64", k32 + "\n%%%\n", 0, "line 2: not base64"},
		{"empty", "# nothing\n", 0, ErrNoKeys.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := Parse([]byte(tc.text))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || len(keys) != tc.keys {
				t.Errorf("%d keys, %v; want %d", len(keys), err, tc.keys)
			}
		})
	}
	if _, err := Parse(nil); !errors.Is(err, ErrNoKeys) {
		t.Errorf("Parse(nil): %v", err)
	}
}

// FuzzParse: a key file is the operator's, but a parser of bytes should
// not panic on any.
func FuzzParse(f *testing.F) {
	f.Add([]byte(base64.StdEncoding.EncodeToString(make([]byte, 80)) + "\n"))
	f.Add([]byte("# c\n\n===\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := Parse(b)
		if (err == nil) == (len(keys) == 0) {
			t.Errorf("%d keys with error %v", len(keys), err)
		}
	})
}
