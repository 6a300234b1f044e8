package health

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// firstBytes is a TCP server that keeps the first n bytes of each
// connection, then closes it: enough to see what a check sent first.
type firstBytes struct {
	mu  sync.Mutex
	got [][]byte
}

func (f *firstBytes) serve(n int) func(net.Conn) {
	return func(c net.Conn) {
		b := make([]byte, n)
		k, _ := io.ReadFull(c, b)
		f.mu.Lock()
		f.got = append(f.got, b[:k])
		f.mu.Unlock()
	}
}

func (f *firstBytes) first() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.got) == 0 {
		return nil
	}
	return f.got[0]
}

// TestPreamble checks that every TCP prober, the database drivers' logins
// included, sends a Check's Preamble before anything else, so a backend
// that requires a PROXY header does not fail every check.
func TestPreamble(t *testing.T) {
	pre := []byte("PROXY UNKNOWN\r\n")
	for _, tc := range []struct {
		name   string
		prober Prober
	}{
		{"tcp", TCP{}},
		{"send_expect", SendExpect{Send: []byte("PING\r\n"), Expect: "PONG"}},
		{"http", HTTP{Method: "GET", Path: "/", StatusMin: 200, StatusMax: 399}},
		{"tls", TLS{}},
		{"redis", Redis{}},
		{"postgres startup", Postgres{}},
		{"postgres login (pgx)", Postgres{Password: "secret"}},
		{"mysql greeting", MySQL{}},
		{"mysql login (driver)", MySQL{User: "u", Password: "p"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &firstBytes{}
			addr := listenTCP(t, f.serve(len(pre)))
			m := &Monitor{}
			check := Check{Prober: tc.prober, Addr: addr, Interval: time.Second, Timeout: 500 * time.Millisecond, Preamble: pre}
			if err := m.Add(check, &recorder{}); err != nil {
				t.Fatal(err)
			}
			m.Start()
			defer m.Stop()
			waitFor(t, 5*time.Second, "a connection", func() bool { return f.first() != nil })
			if got := f.first(); !bytes.Equal(got, pre) {
				t.Errorf("first bytes %q, want the preamble %q", got, pre)
			}
		})
	}
}

// TestPreambleOnUDP checks that a UDP check puts the preamble in front of
// its datagram, in the same datagram, and still reads the reply.
func TestPreambleOnUDP(t *testing.T) {
	pre := []byte("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00")
	var mu sync.Mutex
	var got []byte
	addr := listenUDP(t, func(q []byte) [][]byte {
		mu.Lock()
		got = append([]byte(nil), q...)
		mu.Unlock()
		return [][]byte{[]byte("pong")}
	})
	ctx, cancel := context.WithTimeout(withPreamble(context.Background(), pre), time.Second)
	defer cancel()
	if err := (UDPSendExpect{Send: []byte("ping"), Expect: "pong"}).Probe(ctx, addr); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if string(got) != string(pre)+"ping" {
		t.Errorf("datagram %q, want the preamble then \"ping\"", got)
	}
}
