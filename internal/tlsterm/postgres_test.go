package tlsterm

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"sluice/internal/certs/mint"
	"sluice/l4"
)

// configs makes a server certificate for "db.test" and the configurations
// a server and a client use with it, both offering ALPN postgresql.
func configs(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	ca, err := mint.NewCA("tlsterm test CA")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Issue(t.TempDir(), "db", mint.ECDSA, "db.test")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(pair.CertFile, pair.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{pgALPN}},
		&tls.Config{RootCAs: roots, ServerName: "db.test", NextProtos: []string{pgALPN}}
}

// pair returns both ends of a loopback TCP connection, closed when t ends.
func pair(t *testing.T) (server *net.TCPConn, client *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	deadline := time.Now().Add(10 * time.Second)
	server.SetDeadline(deadline)
	client.SetDeadline(deadline)
	return server, client
}

func message(n, code uint32, rest ...byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, n)
	b = binary.BigEndian.AppendUint32(b, code)
	return append(b, rest...)
}

// startup is a StartupMessage for user "u".
var startup = func() []byte {
	params := []byte("user\x00u\x00\x00")
	return message(uint32(8+len(params)), pgProtocol3, params...)
}()

type result struct {
	stream net.Conn
	first  []byte
	err    error
	cl     l4.Client
}

// terminate runs p.Terminate on the server end while client plays its part
// on the other, and returns what Terminate returned.
func terminate(t *testing.T, p *Postgres, client func(c *net.TCPConn)) result {
	t.Helper()
	srv, cli := pair(t)
	done := make(chan result, 1)
	go func() {
		var r result
		r.stream, r.first, r.err = p.Terminate(srv, &r.cl)
		if r.err != nil {
			srv.CloseWrite() // a refusal's last bytes, then EOF
		}
		done <- r
	}()
	client(cli)
	return <-done
}

// answer reads the server's one-byte answer.
func answer(t *testing.T, c net.Conn) byte {
	t.Helper()
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return b[0]
}

func TestPostgresNegotiation(t *testing.T) {
	srvCfg, cliCfg := configs(t)
	tlsClient := func(cfg *tls.Config) func(c *net.TCPConn) {
		return func(c *net.TCPConn) {
			tc := tls.Client(c, cfg)
			if err := tc.Handshake(); err == nil {
				tc.Write(startup)
			}
		}
	}
	noALPN := cliCfg.Clone()
	noALPN.NextProtos = nil

	for _, tc := range []struct {
		name    string
		require bool
		client  func(t *testing.T, c *net.TCPConn)
		tls     bool   // a TLS stream is returned
		first   []byte // bytes for the backend, for a plain client
		err     error  // errors.Is; nil: no error
		anyErr  bool
	}{
		{name: "SSLRequest", require: true, tls: true, client: func(t *testing.T, c *net.TCPConn) {
			c.Write(message(8, pgSSLRequest))
			if a := answer(t, c); a != 'S' {
				t.Errorf("answer %q, want S", a)
			}
			tlsClient(cliCfg)(c)
		}},
		{name: "SSLRequest without ALPN (libpq before 17)", require: true, tls: true, client: func(t *testing.T, c *net.TCPConn) {
			c.Write(message(8, pgSSLRequest))
			answer(t, c)
			tlsClient(noALPN)(c)
		}},
		{name: "GSSENCRequest, then SSLRequest", require: true, tls: true, client: func(t *testing.T, c *net.TCPConn) {
			c.Write(message(8, pgGSSENCRequest))
			if a := answer(t, c); a != 'N' {
				t.Errorf("answer to GSSENCRequest %q, want N", a)
			}
			c.Write(message(8, pgSSLRequest))
			answer(t, c)
			tlsClient(cliCfg)(c)
		}},
		{name: "direct TLS", require: true, tls: true, client: func(t *testing.T, c *net.TCPConn) {
			tlsClient(cliCfg)(c)
		}},
		{name: "direct TLS without ALPN", require: true, anyErr: true, client: func(t *testing.T, c *net.TCPConn) {
			tlsClient(noALPN)(c)
		}},
		{name: "bytes after SSLRequest do not reach the backend", require: true, anyErr: true, client: func(t *testing.T, c *net.TCPConn) {
			c.Write(append(message(8, pgSSLRequest), startup...))
			answer(t, c)
		}},
		{name: "plain, allowed", first: startup, client: func(t *testing.T, c *net.TCPConn) {
			c.Write(startup)
		}},
		{name: "plain, refused", require: true, err: ErrPlaintextRefused, client: func(t *testing.T, c *net.TCPConn) {
			c.Write(startup)
			got, _ := io.ReadAll(c)
			if len(got) == 0 || got[0] != 'E' || !bytes.Contains(got, []byte("requires TLS")) {
				t.Errorf("refusal %q, want an ErrorResponse", got)
			}
		}},
		{name: "CancelRequest in plain", require: true, first: message(16, pgCancelRequest, 0, 0, 0, 1, 0, 0, 0, 2), client: func(t *testing.T, c *net.TCPConn) {
			c.Write(message(16, pgCancelRequest, 0, 0, 0, 1, 0, 0, 0, 2))
		}},
		{name: "not PostgreSQL", anyErr: true, client: func(t *testing.T, c *net.TCPConn) {
			c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		}},
		{name: "startup too long", anyErr: true, client: func(t *testing.T, c *net.TCPConn) {
			c.Write(message(1<<20, pgProtocol3))
		}},
		{name: "two GSSENCRequests", anyErr: true, client: func(t *testing.T, c *net.TCPConn) {
			c.Write(message(8, pgGSSENCRequest))
			answer(t, c)
			c.Write(message(8, pgGSSENCRequest))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Postgres{Config: srvCfg, RequireTLS: tc.require}
			r := terminate(t, p, func(c *net.TCPConn) { tc.client(t, c) })
			switch {
			case tc.anyErr:
				if r.err == nil {
					t.Fatal("no error")
				}
				return
			case tc.err != nil:
				if !errors.Is(r.err, tc.err) {
					t.Fatalf("error %v, want %v", r.err, tc.err)
				}
				return
			case r.err != nil:
				t.Fatal(r.err)
			}
			if _, isTLS := r.stream.(*tls.Conn); isTLS != tc.tls {
				t.Fatalf("stream %T, want TLS %v", r.stream, tc.tls)
			}
			if tc.tls {
				if r.cl.ServerName != "db.test" {
					t.Errorf("server name %q", r.cl.ServerName)
				}
				got := make([]byte, len(startup))
				if _, err := io.ReadFull(r.stream, got); err != nil || !bytes.Equal(got, startup) {
					t.Errorf("decrypted %q, %v; want the startup message", got, err)
				}
			} else if !bytes.Equal(r.first, tc.first) {
				t.Errorf("first bytes %q, want %q", r.first, tc.first)
			}
		})
	}
}

// FuzzPgFirst: no first message makes pgFirst claim a length it cannot
// have.
func FuzzPgFirst(f *testing.F) {
	for _, m := range [][]byte{message(8, pgSSLRequest), message(8, pgGSSENCRequest), startup[:8],
		message(16, pgCancelRequest), message(7, pgProtocol3), []byte("GET / HT")} {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var head [8]byte
		copy(head[:], b)
		n, kind := pgFirst(head)
		switch {
		case kind == pgBad && n != 0:
			t.Errorf("bad message with length %d", n)
		case kind != pgBad && (n < 8 || n > pgMaxStartup):
			t.Errorf("kind %d with length %d", kind, n)
		}
	})
}

// The backend's side: SSLRequest answered S, then TLS; N refused.
func TestPostgresBackend(t *testing.T) {
	srvCfg, cliCfg := configs(t)
	for _, tc := range []struct {
		name   string
		answer byte
		err    error
	}{
		{"accepts", 'S', nil},
		{"refuses", 'N', ErrBackendRefusedTLS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, cli := pair(t)
			done := make(chan error, 1)
			go func() {
				req := make([]byte, 8)
				io.ReadFull(srv, req)
				if !bytes.Equal(req, message(8, pgSSLRequest)) {
					done <- errors.New("no SSLRequest")
					return
				}
				srv.Write([]byte{tc.answer})
				if tc.answer != 'S' {
					done <- nil
					return
				}
				done <- tls.Server(srv, srvCfg).Handshake()
			}()
			st, err := PostgresBackend{Config: cliCfg}.StartBackend(cli, &l4.Client{})
			if !errors.Is(err, tc.err) {
				t.Errorf("StartBackend: %v, want %v", err, tc.err)
			}
			if err == nil {
				if _, ok := st.(*tls.Conn); !ok {
					t.Errorf("stream %T, want TLS", st)
				}
			}
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
}
