package certs

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"os"
	"slices"
	"time"
)

// fileState is what the watcher last saw of a pair's files.
type fileState struct {
	seen     stamp     // the files as last loaded or tried
	warnedAt time.Time // the last expiry warning
}

// stamp identifies a version of a pair's two files: a renewal that
// replaces a file (a new inode, as certbot's symlink swap or a rename
// makes) or rewrites it in place (a new mtime or size) changes it.
type stamp struct {
	cert, key os.FileInfo
}

func stat(p Pair) (stamp, error) {
	c, err := os.Stat(p.CertFile)
	if err != nil {
		return stamp{}, err
	}
	k, err := os.Stat(p.KeyFile)
	if err != nil {
		return stamp{}, err
	}
	return stamp{c, k}, nil
}

func (a stamp) same(b stamp) bool {
	return sameFile(a.cert, b.cert) && sameFile(a.key, b.key)
}

func sameFile(a, b os.FileInfo) bool {
	if a == nil || b == nil {
		return a == b
	}
	return os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}

// Start starts the reload watcher, unless ReloadInterval is negative.
// Stop stops it; both may be called more than once.
func (s *Store) Start() {
	s.startOnce.Do(func() {
		if s.opts.ReloadInterval < 0 {
			close(s.done)
			return
		}
		go s.watch()
	})
}

// Stop stops the watcher and waits for it to return.
func (s *Store) Stop() {
	s.Start() // so that done is closed even if Start was never called
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
}

func (s *Store) watch() {
	defer close(s.done)
	every := s.opts.ReloadInterval
	if every == 0 {
		every = DefaultReloadInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.Check()
		}
	}
}

// Check reloads every pair whose files changed since they were last
// loaded or tried, and logs expiries. The watcher calls it on each tick;
// a reload signal may call it too. It must not run concurrently with
// itself (the watcher is its one caller while started).
func (s *Store) Check() {
	cur := s.set.Load()
	var next []*tls.Certificate
	for i, p := range s.opts.Pairs {
		st, err := stat(p)
		if err != nil {
			// A file being replaced may be missing for an instant;
			// the old pair serves until both are back.
			if s.files[i].seen.cert != nil {
				s.log.Warn("certificate files unreadable; keeping the loaded certificate",
					slog.String("cert_file", p.CertFile), slog.String("error", err.Error()))
				s.files[i].seen = stamp{}
			}
			continue
		}
		if st.same(s.files[i].seen) {
			s.warnExpiry(i)
			continue
		}
		s.files[i].seen = st
		c, err := Load(p)
		if err != nil {
			// Logged once per version of the files: a half-written
			// pair is retried when its other file lands.
			s.log.Error("reloading certificate failed; keeping the loaded certificate",
				slog.String("cert_file", p.CertFile), slog.String("error", err.Error()))
			continue
		}
		if next == nil {
			next = slices.Clone(cur.certs)
		}
		next[i] = c
		s.log.Info("certificate reloaded", slog.String("cert_file", p.CertFile),
			slog.Any("names", names(c.Leaf)), slog.Time("not_after", c.Leaf.NotAfter))
		s.files[i].warnedAt = time.Time{}
	}
	if next != nil {
		s.set.Store(newSet(next))
		for i := range s.opts.Pairs {
			s.warnExpiry(i)
		}
	}
}

// warnExpiry logs pair i's expiry if it is near (or past), once a day.
func (s *Store) warnExpiry(i int) {
	now := s.opts.Now()
	f := &s.files[i]
	if !f.warnedAt.IsZero() && now.Sub(f.warnedAt) < 24*time.Hour {
		return
	}
	leaf := s.leaf(i)
	warn := s.opts.ExpiryWarning
	if warn == 0 {
		warn = DefaultExpiryWarning
	}
	left := leaf.NotAfter.Sub(now)
	if left > warn {
		return
	}
	f.warnedAt = now
	attrs := []any{slog.String("cert_file", s.opts.Pairs[i].CertFile), slog.Any("names", names(leaf)),
		slog.Time("not_after", leaf.NotAfter), slog.Int("days_left", int(left.Hours()/24))}
	if left <= 0 {
		s.log.Error("certificate has expired", attrs...)
		return
	}
	s.log.Warn("certificate expires soon", attrs...)
}

func (s *Store) leaf(i int) *x509.Certificate { return s.set.Load().certs[i].Leaf }
