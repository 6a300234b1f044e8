// Package mint makes throwaway certificate authorities and certificates,
// written as PEM files, for tests and the demo: no key is ever checked in.
//
//	ca, _ := mint.NewCA("test CA")
//	pair, _ := ca.Issue(dir, "site", mint.ECDSA, "example.com", "*.example.com")
//	caFile, _ := ca.Write(dir)
package mint

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"sluice/internal/certs"
)

// KeyType is a certificate's key algorithm.
type KeyType uint8

const (
	// ECDSA is ECDSA on P-256.
	ECDSA KeyType = iota
	// RSA is RSA with 2048-bit keys.
	RSA
)

// CA is a self-signed certificate authority.
type CA struct {
	Cert *x509.Certificate
	key  crypto.Signer
}

// NewCA makes a CA valid from an hour ago for a year.
func NewCA(name string) (*CA, error) {
	key, err := newKey(ECDSA)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("making CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, key: key}, nil
}

// Write writes the CA's certificate to dir/ca.pem and returns the path.
func (ca *CA) Write(dir string) (string, error) {
	path := filepath.Join(dir, "ca.pem")
	return path, writePEM(path, "CERTIFICATE", ca.Cert.Raw, 0o644)
}

// Options are a certificate's optional properties.
type Options struct {
	// NotAfter is the end of validity; zero means 90 days from now.
	NotAfter time.Time
	// Client makes a client certificate (for mutual TLS) instead of a
	// server one; its first name is its subject's common name.
	Client bool
}

// Issue makes a server certificate for names (DNS names, wildcards and
// IP addresses) and writes it to dir/base.pem and its key to
// dir/base.key.
func (ca *CA) Issue(dir, base string, kt KeyType, names ...string) (certs.Pair, error) {
	return ca.IssueWith(dir, base, kt, Options{}, names...)
}

// IssueWith is Issue with options.
func (ca *CA) IssueWith(dir, base string, kt KeyType, o Options, names ...string) (certs.Pair, error) {
	key, err := newKey(kt)
	if err != nil {
		return certs.Pair{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(90 * 24 * time.Hour)
	}
	if kt == RSA {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	if o.Client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		if len(names) > 0 {
			tmpl.Subject = pkix.Name{CommonName: names[0], Organization: []string{"sluice tests"}}
		}
	} else {
		for _, n := range names {
			if ip := net.ParseIP(n); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, n)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		return certs.Pair{}, fmt.Errorf("making certificate %s: %w", base, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return certs.Pair{}, err
	}
	p := certs.Pair{CertFile: filepath.Join(dir, base+".pem"), KeyFile: filepath.Join(dir, base+".key")}
	if err := writePEM(p.KeyFile, "PRIVATE KEY", keyDER, 0o600); err != nil {
		return certs.Pair{}, err
	}
	return p, writePEM(p.CertFile, "CERTIFICATE", der, 0o644)
}

func newKey(kt KeyType) (crypto.Signer, error) {
	if kt == RSA {
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

// writePEM writes the file whole under a temporary name and renames it
// into place, as certificate managers do, so a reader never sees half.
func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
