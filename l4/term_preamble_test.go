package l4

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"sluice/internal/pool"
)

// A preamble before the ClientHello on a Terminate server: read whole
// (also across segments), consumed, and the handshake goes on with the
// bytes after it; the client it names is logged and admitted. A bad or
// missing one ends the connection as on the loop.
func TestTLSAfterPreamble(t *testing.T) {
	be := startBackend(t, func(c *net.TCPConn) { io.Copy(c, c) })
	p, cfg := startTLSProxy(t, &Server{Name: "t", Pool: newPool(t, pool.RoundRobin, 0, be.addr),
		Preamble: helloParser{}, PreambleTimeout: 300 * time.Millisecond})

	for _, split := range []bool{false, true} {
		c := dial(t, p.addr, "")
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if split {
			c.Write([]byte("HELLO 192.0.2"))
			time.Sleep(20 * time.Millisecond) // two segments, not a wait for anything
			c.Write([]byte(".7:4242\n"))
		} else {
			c.Write([]byte("HELLO 192.0.2.7:4242\n"))
		}
		tc := tls.Client(c, cfg)
		if _, err := tc.Write([]byte("ping")); err != nil {
			t.Fatalf("handshake after the preamble: %v", err)
		}
		got := make([]byte, 4)
		if _, err := io.ReadFull(tc, got); err != nil || string(got) != "ping" {
			t.Fatalf("echo: %q, %v", got, err)
		}
		tc.CloseWrite()
		io.ReadAll(tc)
		rec := p.log.waitEnd(t, EndClientClosed)
		if rec["client"] != "192.0.2.7:4242" || rec["via"] != c.LocalAddr().String() || rec["sni"] != "svc.test" {
			t.Errorf("log line %v: want the preamble's client, via the socket's, and the SNI", rec)
		}
		p.log.reset()
	}

	for _, tc := range []struct {
		name  string
		send  string
		end   End
		errIn string
	}{
		{"not a preamble", "GET / HTTP/1.0\r\n\r\n", EndBadPreamble, "not a hello"},
		{"too slow", "HELLO 192", EndPreambleTimeout, "reading the preamble"},
		{"closed", "", EndClientClosed, "closed before its preamble"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, p.addr, "")
			c.Write([]byte(tc.send))
			if tc.send == "" {
				c.CloseWrite()
			}
			rec := p.log.waitEnd(t, tc.end)
			if !strings.Contains(rec["error"].(string), tc.errIn) || rec["backend"] != "" {
				t.Errorf("log line %v: want %q and no backend", rec, tc.errIn)
			}
			p.log.reset()
		})
	}
}

// reset forgets the lines logged so far.
func (l *logSink) reset() {
	l.mu.Lock()
	l.buf.Reset()
	l.mu.Unlock()
}
