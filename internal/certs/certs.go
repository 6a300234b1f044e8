// Package certs holds a listener's TLS certificates: it loads certificate
// and key pairs, picks one per connection by the server name the client
// asks for (SNI), and reloads the files when they change on disk, keeping
// the old pair when a new one fails to load.
//
//	s, err := certs.New(certs.Options{Pairs: pairs, Logger: log})
//	cfg := &tls.Config{GetCertificate: s.GetCertificate}
//	s.Start(); defer s.Stop()  // the reload watcher
package certs

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for the zero values of Options' fields.
const (
	DefaultReloadInterval = 10 * time.Second
	DefaultExpiryWarning  = 30 * 24 * time.Hour
)

// ErrNoCertificates is returned by New when it is given no pairs.
var ErrNoCertificates = errors.New("certs: no certificates")

// Pair names a certificate file (PEM, the leaf first, then any
// intermediates) and its private key file (PEM).
type Pair struct {
	CertFile, KeyFile string
}

// Options configure a Store. The zero value of each field but Pairs works.
type Options struct {
	// Pairs are the certificates served; the first is the default, served
	// to clients that send no server name or one no certificate covers.
	Pairs []Pair
	// ReloadInterval is how often the files are checked for changes (a
	// stat of each, cheap); zero means DefaultReloadInterval, negative
	// turns the watcher off.
	ReloadInterval time.Duration
	// ExpiryWarning is how long before a certificate expires its expiry
	// is logged as a warning (once a day); zero means DefaultExpiryWarning.
	ExpiryWarning time.Duration
	// Logger receives reloads, failed reloads and expiry warnings; nil
	// means slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Store serves a set of certificates by server name. Its methods are safe
// for concurrent use; a handshake takes no lock.
type Store struct {
	opts  Options
	log   *slog.Logger
	set   atomic.Pointer[set]
	files []fileState // the watcher's own: one per pair

	startOnce, stopOnce sync.Once
	stop                chan struct{}
	done                chan struct{}
}

// New loads every pair. Any pair that fails to load is an error: at start
// there is no old certificate to keep.
func New(o Options) (*Store, error) {
	if len(o.Pairs) == 0 {
		return nil, ErrNoCertificates
	}
	s := &Store{opts: o, log: o.Logger, stop: make(chan struct{}), done: make(chan struct{})}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.opts.Now == nil {
		s.opts.Now = time.Now
	}
	certs := make([]*tls.Certificate, len(o.Pairs))
	s.files = make([]fileState, len(o.Pairs))
	for i, p := range o.Pairs {
		st, _ := stat(p)
		c, err := Load(p)
		if err != nil {
			return nil, err
		}
		certs[i] = c
		s.files[i] = fileState{seen: st}
	}
	s.set.Store(newSet(certs))
	for i := range certs {
		s.warnExpiry(i)
	}
	return s, nil
}

// Load reads one pair and checks that its certificate can be used: it
// parses, matches its key, and names at least one host.
func Load(p Pair) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("loading certificate %s with key %s: %w", p.CertFile, p.KeyFile, err)
	}
	// LoadX509KeyPair has parsed the leaf since Go 1.23.
	if len(names(c.Leaf)) == 0 {
		return nil, fmt.Errorf("loading certificate %s: it names no DNS name or IP address (subjectAltName)", p.CertFile)
	}
	return &c, nil
}

// LoadClient reads a client certificate pair, which need name no host.
func LoadClient(p Pair) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("loading client certificate %s with key %s: %w", p.CertFile, p.KeyFile, err)
	}
	return &c, nil
}

// GetCertificate is tls.Config.GetCertificate: the certificate for the
// client's server name, preferring one the client supports (ECDSA over
// RSA when a name has both and the client takes either), else the default.
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.set.Load().pick(hello), nil
}

// Covers reports whether the certificate served for serverName is valid
// for host: a client reusing one connection for several hosts (HTTP/2
// connection coalescing) must only send hosts that certificate covers.
func (s *Store) Covers(serverName, host string) bool {
	st := s.set.Load()
	hello := &tls.ClientHelloInfo{ServerName: serverName}
	return st.pick(hello).Leaf.VerifyHostname(host) == nil
}

// Expiry is one certificate's names and the end of its validity.
type Expiry struct {
	CertFile string
	Names    []string
	NotAfter time.Time
}

// Expiries returns each served certificate's expiry, in Pairs' order.
func (s *Store) Expiries() []Expiry {
	st := s.set.Load()
	out := make([]Expiry, len(st.certs))
	for i, c := range st.certs {
		out[i] = Expiry{CertFile: s.opts.Pairs[i].CertFile, Names: names(c.Leaf), NotAfter: c.Leaf.NotAfter}
	}
	return out
}

// names returns the host names and IP addresses a certificate is valid
// for. The subject's common name is ignored, as Go's verifier does.
func names(leaf *x509.Certificate) []string {
	out := make([]string, 0, len(leaf.DNSNames)+len(leaf.IPAddresses))
	for _, n := range leaf.DNSNames {
		out = append(out, strings.ToLower(n))
	}
	for _, ip := range leaf.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

// set is one generation of certificates, replaced whole on reload.
type set struct {
	certs []*tls.Certificate
	exact map[string][]int // name -> indexes into certs, in order
	wild  map[string][]int // "example.com" for "*.example.com"
}

func newSet(certs []*tls.Certificate) *set {
	st := &set{certs: certs, exact: map[string][]int{}, wild: map[string][]int{}}
	for i, c := range certs {
		for _, n := range names(c.Leaf) {
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				st.wild[rest] = append(st.wild[rest], i)
			} else {
				st.exact[n] = append(st.exact[n], i)
			}
		}
	}
	// ECDSA first among a name's certificates: its handshakes cost a
	// fraction of RSA's, and a client that supports only RSA still gets
	// the RSA one (first skips what the client cannot use).
	for _, m := range []map[string][]int{st.exact, st.wild} {
		for _, idx := range m {
			slices.SortStableFunc(idx, func(a, b int) int { return rank(certs[a]) - rank(certs[b]) })
		}
	}
	return st
}

func rank(c *tls.Certificate) int {
	if _, ok := c.PrivateKey.(*ecdsa.PrivateKey); ok {
		return 0
	}
	return 1
}

// pick chooses by exact name, then by wildcard (one label, RFC 6125
// 6.4.3), then the default.
func (st *set) pick(hello *tls.ClientHelloInfo) *tls.Certificate {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name != "" {
		if c := st.first(hello, st.exact[name]); c != nil {
			return c
		}
		if _, parent, ok := strings.Cut(name, "."); ok {
			if c := st.first(hello, st.wild[parent]); c != nil {
				return c
			}
		}
	} else if host, _, err := net.SplitHostPort(localAddr(hello)); err == nil {
		// No SNI (a client connecting by IP address): a certificate
		// for the address it connected to, if there is one.
		if c := st.first(hello, st.exact[host]); c != nil {
			return c
		}
	}
	return st.certs[0]
}

// first returns the first certificate among idx the client supports, or
// the first of them if it supports none (the handshake then fails with
// the client's own error), or nil if idx is empty.
func (st *set) first(hello *tls.ClientHelloInfo, idx []int) *tls.Certificate {
	if len(idx) == 0 {
		return nil
	}
	for _, i := range idx {
		// Without cipher suites the hello is our own lookup (Covers),
		// which SupportsCertificate cannot judge.
		if len(hello.CipherSuites) == 0 || hello.SupportsCertificate(st.certs[i]) == nil {
			return st.certs[i]
		}
	}
	return st.certs[idx[0]]
}

func localAddr(hello *tls.ClientHelloInfo) string {
	if hello.Conn == nil {
		return ""
	}
	return hello.Conn.LocalAddr().String()
}
