package tlsterm

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"sluice/l4"
)

// myPkt frames payload as a packet with sequence id seq.
func myPkt(seq byte, payload ...byte) []byte {
	n := len(payload)
	return append([]byte{byte(n), byte(n >> 8), byte(n >> 16), seq}, payload...)
}

// myGreeting is a MariaDB 10.11 greeting, with CLIENT_SSL if ssl.
func myGreeting(ssl bool) []byte {
	caps := uint16(0xf7fe) &^ myClientSSL // as MariaDB sends it, without TLS
	if ssl {
		caps |= myClientSSL
	}
	p := []byte{myProtocol10}
	p = append(p, "5.5.5-10.11.14-MariaDB\x00"...)
	p = append(p, 7, 0, 0, 0)    // connection id
	p = append(p, "scramble"...) // auth data, part 1
	p = append(p, 0)             // filler
	p = binary.LittleEndian.AppendUint16(p, caps)
	p = append(p, 45, 2, 0, 0xff, 0x81, 21) // charset, status, upper caps, auth data length
	p = append(p, make([]byte, 10)...)
	p = append(p, "-part-two-12\x00"...)
	p = append(p, "mysql_native_password\x00"...)
	return myPkt(0, p...)
}

// myResponsePayload is a HandshakeResponse41 for user "u", with CLIENT_SSL
// if ssl.
func myResponsePayload(ssl bool) []byte {
	caps := uint32(myClientProtocol41 | 0x000a8205)
	if ssl {
		caps |= myClientSSL
	}
	p := binary.LittleEndian.AppendUint32(nil, caps)
	p = binary.LittleEndian.AppendUint32(p, 1<<24) // max packet
	p = append(p, 45)                              // charset
	p = append(p, make([]byte, 23)...)
	p = append(p, "u\x00"...)
	p = append(p, 20)
	return append(p, "twenty-bytes-of-hash"...)
}

// readPkt reads one packet or fails t.
func readPkt(t *testing.T, r io.Reader) []byte {
	t.Helper()
	p, err := readMySQLPacket(r)
	if err != nil {
		t.Fatalf("reading a packet: %v", err)
	}
	return p
}

// caps is a response packet's capability flags.
func capsOf(p []byte) uint32 { return binary.LittleEndian.Uint32(p[myHeader:]) }

// TestMySQLNegotiation runs Negotiate between a scripted client and a
// scripted server, for each combination of TLS on the two sides, and
// checks what each side sees: the greeting with TLS offered, the response
// with the flag and sequence ids its connection needs, and an
// authentication exchange (a switch, fast auth success, OK) with ids
// shifted, then a command passed as it is.
func TestMySQLNegotiation(t *testing.T) {
	srvCfg, cliCfg := configs(t)
	cliCfg.NextProtos = nil
	for _, tc := range []struct {
		name                  string
		clientTLS, backendTLS bool
	}{
		{"TLS client, plain server", true, false},
		{"TLS both sides", true, true},
		{"plain client, TLS server", false, true},
		{"plain both sides", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &MySQL{Config: srvCfg}
			if tc.backendTLS {
				m.Backend = cliCfg
			}
			srv, cli := pair(t)   // sluice's client side
			bsrv, bcli := pair(t) // sluice's backend side: bcli is sluice's
			// The server: greeting, then the response and an
			// authentication exchange, with its own ids.
			served := make(chan error, 1)
			go func() { served <- scriptServer(bsrv, srvCfg, tc.backendTLS) }()

			type out struct {
				cs, bs net.Conn
				err    error
			}
			neg := make(chan out, 1)
			go func() {
				var cl l4.Client
				st, err := m.StartBackend(bcli, &cl)
				if err != nil {
					neg <- out{err: err}
					return
				}
				cs, _, _ := m.Terminate(srv, &cl)
				cs, bs, err := m.Negotiate(cs, st, &cl)
				neg <- out{cs, bs, err}
				if err != nil {
					return
				}
				// Then copy, as l4 does (until t's cleanup closes
				// the sockets).
				cs.SetDeadline(time.Time{})
				bs.SetDeadline(time.Time{})
				go io.Copy(bs, cs)
				io.Copy(cs, bs)
			}()

			// The client.
			g := readPkt(t, cli)
			at, err := greetingCaps(g[myHeader:])
			if err != nil {
				t.Fatal(err)
			}
			if binary.LittleEndian.Uint16(g[myHeader+at:])&myClientSSL == 0 {
				t.Fatal("the greeting does not offer TLS")
			}
			var c net.Conn = cli
			seq := byte(1)
			if tc.clientTLS {
				cli.Write(myPkt(1, myResponsePayload(true)[:mySSLRequestLen]...))
				tc := tls.Client(cli, cliCfg)
				if err := tc.Handshake(); err != nil {
					t.Fatal(err)
				}
				c, seq = tc, 2
			}
			c.Write(myPkt(seq, myResponsePayload(tc.clientTLS)...))
			// Auth switch, answered; fast auth success; OK.
			if p := readPkt(t, c); p[3] != seq+1 || p[myHeader] != 0xfe {
				t.Fatalf("auth switch % x, want sequence id %d", p[:myHeader+1], seq+1)
			}
			c.Write(myPkt(seq+2, []byte("answer")...))
			if p := readPkt(t, c); p[3] != seq+3 || !bytes.Equal(p[myHeader:], []byte{1, 3}) {
				t.Fatalf("fast auth success % x, want sequence id %d", p, seq+3)
			}
			if p := readPkt(t, c); p[3] != seq+4 || p[myHeader] != myOK {
				t.Fatalf("OK % x, want sequence id %d", p, seq+4)
			}
			// A command: sequence id 0 on both sides, as it is.
			c.Write(myPkt(0, 3, 'S', 'E', 'L'))
			if err := <-served; err != nil {
				t.Fatal(err)
			}
			o := <-neg
			if o.err != nil {
				t.Fatal(o.err)
			}
			if _, isTLS := o.cs.(*tls.Conn); isTLS != tc.clientTLS {
				t.Errorf("client stream %T", o.cs)
			}
			if _, isTLS := o.bs.(*tls.Conn); isTLS != tc.backendTLS {
				t.Errorf("backend stream %T", o.bs)
			}
		})
	}
}

// scriptServer plays a server: it checks what arrives with the ids its own
// connection counts, and answers.
func scriptServer(c *net.TCPConn, cfg *tls.Config, useTLS bool) error {
	c.Write(myGreeting(useTLS))
	var s net.Conn = c
	seq := byte(1)
	if useTLS {
		p, err := readMySQLPacket(c)
		if err != nil {
			return err
		}
		if len(p) != myHeader+mySSLRequestLen || p[3] != 1 || capsOf(p)&myClientSSL == 0 {
			return errors.New("server: no SSLRequest")
		}
		tc := tls.Server(c, cfg)
		if err := tc.Handshake(); err != nil {
			return err
		}
		s, seq = tc, 2
	}
	p, err := readMySQLPacket(s)
	if err != nil {
		return err
	}
	if p[3] != seq || (capsOf(p)&myClientSSL != 0) != useTLS || len(p) != myHeader+len(myResponsePayload(false)) {
		return errors.New("server: response with the wrong id or flags")
	}
	s.Write(myPkt(seq+1, append([]byte{0xfe}, "mysql_native_password\x00salt"...)...))
	if p, err = readMySQLPacket(s); err != nil || p[3] != seq+2 || string(p[myHeader:]) != "answer" {
		return errors.New("server: no answer to the auth switch")
	}
	s.Write(myPkt(seq+3, 1, 3))
	s.Write(myPkt(seq+4, myOK, 0, 0, 2, 0, 0, 0))
	if p, err = readMySQLPacket(s); err != nil || p[3] != 0 || string(p[myHeader:]) != "\x03SEL" {
		return errors.New("server: the command did not arrive as sent")
	}
	return nil
}

// TestMySQLRefusals: plain clients on a listener that requires TLS get an
// ERR packet; malformed first packets and greetings fail.
func TestMySQLRefusals(t *testing.T) {
	srvCfg, _ := configs(t)
	for _, tc := range []struct {
		name     string
		greeting []byte
		client   []byte // the client's first packet
		startErr bool   // StartBackend fails
		err      error
		wantErr  string // in the client's ERR packet
	}{
		{name: "plain client", greeting: myGreeting(false), client: myPkt(1, myResponsePayload(false)...),
			err: ErrPlaintextRefused, wantErr: "requires TLS"},
		{name: "pre-4.1 client", greeting: myGreeting(false), client: myPkt(1, 0x05, 0x82, 0, 0, 0, 'u', 0), err: errMySQLPacket},
		{name: "short packet", greeting: myGreeting(false), client: myPkt(1, 0x00, 0x02, 0, 0), err: errMySQLPacket},
		{name: "server refuses", greeting: myPkt(0, append([]byte{0xff, 0x10, 0x04}, "Too many connections"...)...), startErr: true},
		{name: "not a greeting", greeting: myPkt(0, 9, 'x', 0), startErr: true},
		{name: "huge packet", greeting: []byte{0xff, 0xff, 0xff, 0}, startErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &MySQL{Config: srvCfg, RequireTLS: true}
			srv, cli := pair(t)
			bsrv, bcli := pair(t)
			bsrv.Write(tc.greeting)
			var cl l4.Client
			st, err := m.StartBackend(bcli, &cl)
			if tc.startErr {
				if err == nil {
					t.Fatal("StartBackend: no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, _, err := m.Negotiate(srv, st, &cl)
				srv.CloseWrite()
				done <- err
			}()
			readPkt(t, cli)
			cli.Write(tc.client)
			rest, _ := io.ReadAll(cli)
			if err := <-done; !errors.Is(err, tc.err) {
				t.Fatalf("Negotiate: %v, want %v", err, tc.err)
			}
			if tc.wantErr != "" {
				if len(rest) < myHeader+1 || rest[myHeader] != myERR || rest[3] != 2 || !bytes.Contains(rest, []byte(tc.wantErr)) {
					t.Errorf("client got % q, want an ERR packet with sequence id 2", rest)
				}
			}
		})
	}
}

// TestMySQLBackendWithoutTLS: a greeting that does not offer TLS fails a
// backend that must be spoken to in TLS, so that the next is tried.
func TestMySQLBackendWithoutTLS(t *testing.T) {
	_, cliCfg := configs(t)
	bsrv, bcli := pair(t)
	bsrv.Write(myGreeting(false))
	m := &MySQL{Backend: cliCfg}
	if _, err := m.StartBackend(bcli, &l4.Client{}); !errors.Is(err, ErrBackendRefusedTLS) {
		t.Fatalf("StartBackend: %v, want %v", err, ErrBackendRefusedTLS)
	}
}

// FuzzMySQLGreeting: greetingCaps never points past the greeting.
func FuzzMySQLGreeting(f *testing.F) {
	f.Add(myGreeting(true)[myHeader:])
	f.Add([]byte{10, 'v', 0, 1, 2, 3, 4})
	f.Add([]byte{0xff, 1})
	f.Fuzz(func(t *testing.T, p []byte) {
		at, err := greetingCaps(p)
		if err == nil && (at < 1 || at+2 > len(p)) {
			t.Errorf("offset %d in %d bytes", at, len(p))
		}
	})
}

// FuzzMySQLClientFirst: what clientFirst accepts, withCaps and
// sslRequestFor can rewrite.
func FuzzMySQLClientFirst(f *testing.F) {
	f.Add(myResponsePayload(false))
	f.Add(myResponsePayload(true)[:mySSLRequestLen])
	f.Add([]byte{0x05, 0x82, 0, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		_, kind := clientFirst(p)
		switch kind {
		case myResponse:
			pkt := myPkt(1, p...)
			if r := sslRequestFor(pkt); len(r) != myHeader+mySSLRequestLen || r[0] != mySSLRequestLen {
				t.Errorf("SSLRequest % x", r)
			}
			if w := withCaps(pkt, 2, true); len(w) != len(pkt) || capsOf(w)&myClientSSL == 0 {
				t.Errorf("withCaps % x", w)
			}
		case mySSLRequest:
			if len(p) != mySSLRequestLen {
				t.Errorf("SSLRequest of %d bytes", len(p))
			}
		}
	})
}

// FuzzMySQLPacket: a packet read is whole and within bounds, and nothing
// after it is consumed.
func FuzzMySQLPacket(f *testing.F) {
	f.Add(append(myPkt(1, []byte("abc")...), "next"...))
	f.Add([]byte{0xff, 0xff, 0xff, 0})
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		p, err := readMySQLPacket(r)
		if err != nil {
			return
		}
		n := int(p[0]) | int(p[1])<<8 | int(p[2])<<16
		if len(p) != myHeader+n || n > myMaxPacket || !bytes.Equal(p, b[:len(p)]) || r.Len() != len(b)-len(p) {
			t.Errorf("packet % x from % x", p, b)
		}
	})
}
