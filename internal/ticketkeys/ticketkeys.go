// Package ticketkeys holds a TLS listener's session ticket keys (RFC 5077,
// RFC 8446 4.6.1) on the operator's schedule: read from a file that
// several hosts share, so that a client resumes its session on whichever
// host it reaches, and read again when the file changes; or made in
// memory and rotated every so often.
//
//	k, err := ticketkeys.New(ticketkeys.Options{File: path, Logger: log})
//	k.Apply(cfg)                 // cfg.WrapSession, cfg.UnwrapSession
//	k.Start(); defer k.Stop()    // the file watcher, or the rotation
package ticketkeys

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for the zero values of Options' fields.
const (
	DefaultReloadInterval = 10 * time.Second
	// DefaultRotation is crypto/tls's own rotation of the keys it makes.
	DefaultRotation = 24 * time.Hour
)

// MinKeyBytes is the shortest key a file may hold.
const MinKeyBytes = 32

// ErrNoKeys is returned for a file that holds no key.
var ErrNoKeys = errors.New("ticketkeys: no keys")

// Options configure Keys. The zero value makes keys in memory, rotated
// daily.
type Options struct {
	// File, if set, holds the keys, one per line in base64 (standard
	// alphabet, padded or not), each MinKeyBytes or more (48 or 80 bytes
	// as nginx and HAProxy take, from openssl rand 80 | base64 -w0);
	// blank lines and lines starting with # are skipped. The first key
	// encrypts new tickets, every key decrypts: to rotate, put a new key
	// first and drop the oldest.
	File string
	// ReloadInterval is how often File is checked for changes (a stat);
	// zero means DefaultReloadInterval, negative turns the watcher off.
	ReloadInterval time.Duration
	// Rotation, without File, is how often a new key is made; the
	// previous one still decrypts until the next rotation, so a ticket
	// resumes for between one and two Rotations. Zero means
	// DefaultRotation.
	Rotation time.Duration
	// Logger receives reloads and failed reloads; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Keys are a listener's session ticket keys. Its methods are safe for
// concurrent use; a handshake takes no lock of ours.
type Keys struct {
	o Options
	// cur holds the keys in a tls.Config of its own, whose EncryptTicket
	// and DecryptTicket do the work: a Config's keys cannot be changed in
	// the copies Clone makes (l7 clones its Config), a function field's
	// target can.
	cur  atomic.Pointer[tls.Config]
	seen os.FileInfo // the file as last loaded or tried; the watcher's own
	mem  [][32]byte  // in-memory keys, newest first; the watcher's own

	startOnce, stopOnce sync.Once
	stop, done          chan struct{}
}

// New reads o.File, or makes the first in-memory key.
func New(o Options) (*Keys, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	k := &Keys{o: o, stop: make(chan struct{}), done: make(chan struct{})}
	if o.File == "" {
		k.rotate()
		return k, nil
	}
	k.seen, _ = os.Stat(o.File)
	keys, err := Load(o.File)
	if err != nil {
		return nil, err
	}
	k.set(keys)
	return k, nil
}

// Load reads a key file (see Options.File) into crypto/tls's keys: each
// key is hashed with SHA-256 to the 32 bytes crypto/tls takes, so every
// byte of a longer key counts.
func Load(path string) ([][32]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading session ticket keys: %w", err)
	}
	keys, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("reading session ticket keys from %s: %w", path, err)
	}
	return keys, nil
}

// Parse reads the keys of a key file's contents (see Options.File).
func Parse(b []byte) ([][32]byte, error) {
	var keys [][32]byte
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(line, "="))
		if err != nil {
			return nil, fmt.Errorf("line %d: not base64", i+1)
		}
		if len(raw) < MinKeyBytes {
			return nil, fmt.Errorf("line %d: a key of %d bytes, want %d or more", i+1, len(raw), MinKeyBytes)
		}
		keys = append(keys, sha256.Sum256(raw))
	}
	if len(keys) == 0 {
		return nil, ErrNoKeys
	}
	return keys, nil
}

// set makes keys the ones in use.
func (k *Keys) set(keys [][32]byte) {
	c := &tls.Config{}
	c.SetSessionTicketKeys(keys)
	k.cur.Store(c)
}

// Apply makes cfg's session tickets use the Keys, in every copy Clone
// makes of it afterwards too.
func (k *Keys) Apply(cfg *tls.Config) {
	cfg.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		return k.cur.Load().EncryptTicket(cs, ss)
	}
	// A ticket no key decrypts comes back nil, nil: a full handshake.
	cfg.UnwrapSession = func(ticket []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		return k.cur.Load().DecryptTicket(ticket, cs)
	}
}

// rotate makes a new in-memory key, keeping the previous one to decrypt.
func (k *Keys) rotate() {
	var key [32]byte
	rand.Read(key[:]) // never fails (crypto/rand, Go 1.24)
	k.mem = append([][32]byte{key}, k.mem...)
	if len(k.mem) > 2 {
		k.mem = k.mem[:2]
	}
	k.set(k.mem)
}

// reload reads the file again if it changed; a file that fails to load
// is logged once and the keys in use kept.
func (k *Keys) reload() {
	st, err := os.Stat(k.o.File)
	if err == nil && k.seen != nil && os.SameFile(st, k.seen) && st.ModTime().Equal(k.seen.ModTime()) && st.Size() == k.seen.Size() {
		return
	}
	if err != nil && k.seen == nil {
		return // still missing: logged already
	}
	k.seen = st
	keys, err := Load(k.o.File)
	if err != nil {
		k.o.Logger.Error("reloading session ticket keys failed; keeping the loaded keys",
			slog.String("file", k.o.File), slog.String("error", err.Error()))
		return
	}
	k.set(keys)
	k.o.Logger.Info("session ticket keys reloaded", slog.String("file", k.o.File), slog.Int("keys", len(keys)))
}

// Start starts the file watcher, or the rotation of in-memory keys. Stop
// stops it and waits for it; both may be called more than once.
func (k *Keys) Start() {
	k.startOnce.Do(func() {
		every, step := k.o.Rotation, k.rotate
		if every == 0 {
			every = DefaultRotation
		}
		if k.o.File != "" {
			every, step = k.o.ReloadInterval, k.reload
			if every == 0 {
				every = DefaultReloadInterval
			}
		}
		if every < 0 {
			close(k.done)
			return
		}
		go k.loop(every, step)
	})
}

func (k *Keys) loop(every time.Duration, step func()) {
	defer close(k.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-k.stop:
			return
		case <-t.C:
			step()
		}
	}
}

// Stop stops what Start started and waits for it.
func (k *Keys) Stop() {
	k.Start() // so that done is closed even if Start was never called
	k.stopOnce.Do(func() { close(k.stop) })
	<-k.done
}
