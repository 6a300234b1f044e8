// Package acmecert gets a listener's certificates from an ACME CA (Let's
// Encrypt, or any RFC 8555 server) with golang.org/x/crypto/acme/autocert:
// the TLS-ALPN-01 challenge is answered by the listener's own handshakes,
// HTTP-01 (when Options.HTTP01 is set) by plain HTTP listeners through an
// HTTP01 set, certificates and the account key are stored on disk, renewed before
// they expire, and served from storage while the CA cannot be reached.
//
//	m := acmecert.New(acmecert.Options{Names: names, Storage: dir, ...})
//	cfg.GetCertificate = m.Wrap(store.GetCertificate)   // names to ACME, others to files
//	cfg.NextProtos = append(cfg.NextProtos, acmecert.ALPNProto); m.Start(); defer m.Stop()
package acmecert

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// ALPNProto is the protocol a TLS-ALPN-01 validation negotiates (RFC
// 8737): a listener with ACME must offer it, and must not proxy a
// connection that negotiated it.
const ALPNProto = acme.ALPNProto

// DefaultCA is Let's Encrypt's production directory.
const DefaultCA = autocert.DefaultACMEDirectory

// Options configure a Manager.
type Options struct {
	// Names are the host names certificates are asked for: exact names,
	// since TLS-ALPN-01 cannot prove a wildcard.
	Names []string
	// Email is the account's contact, for the CA's expiry notices; ""
	// registers none.
	Email string
	// CA is the ACME directory URL; "" means DefaultCA.
	CA string
	// Storage is the directory certificates and the account key are kept
	// in (created 0700).
	Storage string
	// RenewBefore is how long before expiry a certificate is renewed;
	// zero means the lesser of 30 days and a third of its lifetime.
	RenewBefore time.Duration
	// Logger receives the outcome of getting each name's certificate at
	// Start; nil means slog.Default().
	Logger *slog.Logger
	// HTTP01 lets the CA prove the names by HTTP-01 too (RFC 8555 8.3),
	// when TLS-ALPN-01 fails: set it only when a plain HTTP listener
	// answers the Manager's validations (HTTP01.Add), or each failure
	// costs one more failed validation, which CAs limit.
	HTTP01 bool
}

// Manager serves ACME certificates for its names.
type Manager struct {
	o     Options
	m     *autocert.Manager
	names map[string]bool
	http  http.Handler // HTTP-01 validations; nil without Options.HTTP01

	stopOnce sync.Once
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// New returns a Manager for o. Nothing is asked of the CA until Start or
// a handshake needs it.
func New(o Options) *Manager {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	names := make(map[string]bool, len(o.Names))
	for _, n := range o.Names {
		names[strings.ToLower(n)] = true
	}
	m := &Manager{o: o, names: names, m: &autocert.Manager{
		Prompt:      autocert.AcceptTOS,
		Cache:       autocert.DirCache(o.Storage),
		HostPolicy:  autocert.HostWhitelist(o.Names...),
		RenewBefore: o.RenewBefore,
		Email:       o.Email,
		Client:      &acme.Client{DirectoryURL: cmpOr(o.CA, DefaultCA)},
	}}
	if o.HTTP01 {
		// Asking autocert for its handler is what turns HTTP-01 on; it
		// is tried after TLS-ALPN-01. The fallback is never reached:
		// HTTP01.Handler hands over only the challenge path.
		m.http = m.m.HTTPHandler(http.NotFoundHandler())
	}
	return m
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Covers reports whether the handshake is the Manager's: a name it has,
// or a CA's TLS-ALPN-01 validation.
func (m *Manager) Covers(hello *tls.ClientHelloInfo) bool {
	return m.names[strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))] ||
		slices.Contains(hello.SupportedProtos, ALPNProto)
}

// GetCertificate is tls.Config.GetCertificate for the Manager's names: the
// stored certificate (renewed in the background when due), or a new one
// from the CA, or a validation's challenge certificate.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return m.m.GetCertificate(hello)
}

// Wrap returns a GetCertificate that gives the Manager its handshakes and
// the others to files (nil: none, an error).
func (m *Manager) Wrap(files func(*tls.ClientHelloInfo) (*tls.Certificate, error)) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if m.Covers(hello) || files == nil {
			return m.GetCertificate(hello)
		}
		return files(hello)
	}
}

// Start gets (from storage, or from the CA) each name's certificate in the
// background, so that the first client does not wait for an issuance and
// renewals are scheduled from the start; each outcome is logged. Stop
// ends it.
func (m *Manager) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	for _, name := range m.o.Names {
		m.wg.Go(func() { m.prefetch(ctx, name) })
	}
}

// prefetch gets name's certificate as a client that takes ECDSA would:
// autocert keeps ECDSA and RSA certificates apart, and modern clients ask
// for ECDSA.
func (m *Manager) prefetch(ctx context.Context, name string) {
	hello := &tls.ClientHelloInfo{ServerName: name,
		SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
		SupportedCurves:  []tls.CurveID{tls.CurveP256},
		CipherSuites:     []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	}
	done := make(chan error, 1)
	go func() { // autocert bounds it (5 minutes); the channel's room lets it end unread
		_, err := m.m.GetCertificate(hello)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			m.o.Logger.Error("getting ACME certificate failed; handshakes for the name will try again",
				slog.String("name", name), slog.String("error", err.Error()))
			return
		}
		m.o.Logger.Info("ACME certificate ready", slog.String("name", name))
	case <-ctx.Done():
	}
}

// Stop ends Start's work; it may be called more than once. A prefetch's
// request to the CA is not cut short (autocert bounds it at 5 minutes and
// offers no way to cancel it), but nothing waits for it. Nor can
// autocert's renewal timers be stopped: a Manager replaced by a reload
// still renews its certificates, into the same storage.
func (m *Manager) Stop() {
	m.stopOnce.Do(func() {
		if m.cancel != nil {
			m.cancel()
		}
		m.wg.Wait()
	})
}

// Expiry is when one of a Manager's certificates expires.
type Expiry struct {
	// Name is the host name the certificate is for.
	Name string
	// File is where it is stored (Options.Storage, then the name, with
	// "+rsa" for the RSA certificate of clients that take no ECDSA).
	File string
	// NotAfter is when its leaf expires.
	NotAfter time.Time
}

// Expiries reads the certificates the Manager has in storage, which are
// those it serves (autocert stores a renewal before serving it): one per
// name, and one more for a name that clients without ECDSA asked for.
// Names not yet issued are left out.
func (m *Manager) Expiries() []Expiry {
	var out []Expiry
	for _, name := range m.o.Names {
		for _, key := range []string{name, name + "+rsa"} {
			b, err := m.m.Cache.Get(context.Background(), key)
			if err != nil {
				continue // autocert.ErrCacheMiss: none yet
			}
			if na, ok := notAfter(b); ok {
				out = append(out, Expiry{Name: name, File: filepath.Join(m.o.Storage, key), NotAfter: na})
			}
		}
	}
	return out
}

// notAfter is the expiry of the first certificate in autocert's stored
// form: the private key, then the chain, in PEM.
func notAfter(b []byte) (time.Time, bool) {
	for {
		var block *pem.Block
		if block, b = pem.Decode(b); block == nil {
			return time.Time{}, false
		}
		if block.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return time.Time{}, false
			}
			return c.NotAfter, true
		}
	}
}

// ErrValidation is returned by a terminator for a connection that
// negotiated ALPNProto: a CA's validation, answered by the handshake, not
// a client to proxy.
var ErrValidation = errors.New("acmecert: an ACME tls-alpn-01 validation, answered by the handshake")

// ChallengePath is where an HTTP-01 validation asks for its token:
// http://NAME/.well-known/acme-challenge/TOKEN (RFC 8555 8.3).
const ChallengePath = "/.well-known/acme-challenge/"

// HTTP01 is the set of Managers whose HTTP-01 validations plain HTTP
// listeners answer, whichever listener the Managers belong to: the CA
// connects to port 80 of the name, not to the TLS listener. Its zero
// value is empty and ready; it is safe for concurrent use.
type HTTP01 struct {
	mu sync.RWMutex
	ms []*Manager // latest last: a reload adds the new before removing the old
}

// Add makes h answer m's validations; a Manager without Options.HTTP01 is
// ignored.
func (h *HTTP01) Add(m *Manager) {
	if m.http == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ms = append(h.ms, m)
}

// Remove undoes Add.
func (h *HTTP01) Remove(m *Manager) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ms = slices.DeleteFunc(h.ms, func(x *Manager) bool { return x == m })
}

// Handler returns the handler of a validation request (a path under
// ChallengePath) for host, a name without port; nil when no Manager has
// the name, so that the request goes on to the listener's routes (a
// backend may run its own ACME client).
func (h *HTTP01) Handler(host string) http.Handler {
	if h == nil {
		return nil
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, m := range slices.Backward(h.ms) {
		if m.names[host] {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// autocert checks r.Host against its names as it
				// is: without the port a CA may add (RFC 8555 8.3
				// says port 80, test CAs use others).
				r = r.WithContext(r.Context())
				r.Host = host
				m.http.ServeHTTP(w, r)
			})
		}
	}
	return nil
}

// CheckNames reports the first name ACME cannot get a certificate for
// with TLS-ALPN-01: a wildcard, an IP address, a name without a dot.
func CheckNames(names []string) error {
	for _, n := range names {
		switch _, err := netip.ParseAddr(n); {
		case err == nil:
			return fmt.Errorf("%q is an IP address: ACME certificates here are for host names", n)
		case strings.Contains(n, "*"):
			return fmt.Errorf("%q is a wildcard, which TLS-ALPN-01 cannot prove", n)
		case !strings.Contains(strings.Trim(n, "."), "."):
			return fmt.Errorf("%q is not a public host name", n)
		}
	}
	return nil
}
