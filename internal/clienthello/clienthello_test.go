package clienthello

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// captureConn records what a TLS client writes and ends its handshake
// there: reads fail.
type captureConn struct{ bytes.Buffer }

func (c *captureConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (c *captureConn) Close() error                     { return nil }
func (c *captureConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *captureConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *captureConn) SetDeadline(time.Time) error      { return nil }
func (c *captureConn) SetReadDeadline(time.Time) error  { return nil }
func (c *captureConn) SetWriteDeadline(time.Time) error { return nil }

// hello returns the ClientHello crypto/tls sends with cfg.
func hello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	c := &captureConn{}
	tls.Client(c, cfg).Handshake()
	if c.Len() == 0 {
		t.Fatal("no ClientHello written")
	}
	return c.Bytes()
}

// refragment splits the handshake message of one-record hello b into
// records of at most size bytes.
func refragment(b []byte, size int) []byte {
	msg := b[recordHeaderLen:]
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, recordTypeHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

func TestServerName(t *testing.T) {
	pq := hello(t, &tls.Config{ServerName: "Shop.Example.COM"}) // X25519MLKEM768 by default: ~1.8 KB
	tls12 := hello(t, &tls.Config{ServerName: "db.internal", MaxVersion: tls.VersionTLS12})
	noSNI := hello(t, &tls.Config{InsecureSkipVerify: true})
	if len(pq) < 1200 {
		t.Fatalf("the default hello is %d bytes; expected a post-quantum key share", len(pq))
	}
	huge := []byte{22, 3, 1, 0, 4, 1, 0xff, 0, 0} // a 16 MiB hello announced
	for _, tc := range []struct {
		name string
		in   []byte
		want string
		err  error
	}{
		{"post-quantum hello, name lower-cased", pq, "shop.example.com", nil},
		{"TLS 1.2", tls12, "db.internal", nil},
		{"no SNI", noSNI, "", nil},
		{"split over records", refragment(pq, 100), "shop.example.com", nil},
		{"one byte per record", refragment(tls12, 1), "db.internal", nil},
		{"followed by more bytes", append(append([]byte{}, tls12...), "trailing"...), "db.internal", nil},
		{"half a hello", pq[:len(pq)/2], "", ErrIncomplete},
		{"a record header only", pq[:5], "", ErrIncomplete},
		{"empty", nil, "", ErrIncomplete},
		{"HTTP", []byte("GET / HTTP/1.1\r\n"), "", ErrNotTLS},
		{"one byte of HTTP", []byte("G"), "", ErrNotTLS},
		{"SSL 2", []byte{22, 2, 0, 0, 10}, "", ErrNotTLS},
		{"too large", huge, "", ErrMalformed},
		{"not a ClientHello", []byte{22, 3, 1, 0, 4, 2, 0, 0, 0}, "", ErrMalformed},
		{"an alert inside", append(refragment(pq, 1000)[:1005], 21, 3, 3, 0, 2, 2, 40), "", ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := bytes.Clone(tc.in)
			got, err := ServerName(in)
			if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
				t.Errorf("ServerName = %q, %v; want %q, %v", got, err, tc.want, tc.err)
			}
			if !bytes.Equal(in, tc.in) {
				t.Error("ServerName modified its input")
			}
		})
	}
	// Every prefix of a whole hello is incomplete, never an error.
	for i := range pq {
		if _, err := ServerName(pq[:i]); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("prefix of %d bytes: %v, want ErrIncomplete", i, err)
		}
	}
}

// TestServerNameAllocations: a hello in one record is read in place.
func TestServerNameAllocations(t *testing.T) {
	b := hello(t, &tls.Config{ServerName: "a.test"})
	if n := testing.AllocsPerRun(100, func() { ServerName(b) }); n > 1 {
		t.Errorf("%v allocations per hello, want at most 1 (the name)", n)
	}
}

// FuzzServerName: untrusted bytes from any client. No panic; a name is
// always a valid one; and how the hello is split into records does not
// change the answer.
func FuzzServerName(f *testing.F) {
	f.Add(hello(f, &tls.Config{ServerName: "example.com"}))
	f.Add(hello(f, &tls.Config{ServerName: "db.internal", MaxVersion: tls.VersionTLS12}))
	f.Add(hello(f, &tls.Config{InsecureSkipVerify: true}))
	f.Add([]byte{22, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		name, err := ServerName(b)
		if err == nil && name != "" && !validName([]byte(name)) {
			t.Fatalf("invalid name %q accepted", name)
		}
		if err != nil || len(b) < recordHeaderLen {
			return
		}
		n := int(b[3])<<8 | int(b[4])
		if n < 4 {
			return
		}
		one := b[:recordHeaderLen+n]
		if m := 4 + (int(one[6])<<16 | int(one[7])<<8 | int(one[8])); m != n {
			return // not exactly one record holding one message
		}
		if again, err := ServerName(refragment(one, 7)); again != name || err != nil {
			t.Fatalf("split into records: %q, %v; whole: %q", again, err, name)
		}
	})
}
