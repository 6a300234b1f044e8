package l4

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"sluice/internal/pool"
)

// greetNegotiator plays a server-first protocol's negotiation: it reads
// the backend's greeting line and passes it to the client in upper case
// (so the test can tell it went through Negotiate, not the copy), or
// fails as fail says.
type greetNegotiator struct{ fail error }

func (greetNegotiator) Terminate(c *net.TCPConn, _ *Client) (net.Conn, []byte, error) {
	return c, nil, nil
}

func (n greetNegotiator) Negotiate(cs, bs net.Conn, _ *Client) (net.Conn, net.Conn, error) {
	if n.fail != nil {
		return nil, nil, n.fail
	}
	line, err := bufio.NewReader(io.LimitReader(bs, 6)).ReadString('\n')
	if err != nil {
		return nil, nil, &BackendError{Err: err}
	}
	if _, err := cs.Write([]byte(strings.ToUpper(line))); err != nil {
		return nil, nil, err
	}
	return cs, bs, nil
}

// A Negotiator runs once the backend is connected: the backend's greeting
// goes through it, then bytes are copied both ways. Its errors end the
// connection as the backend's or the client's.
func TestNegotiatorAfterConnect(t *testing.T) {
	be := startBackend(t, func(c *net.TCPConn) {
		c.Write([]byte("hello\n"))
		io.Copy(c, c)
	})
	for _, tc := range []struct {
		name string
		fail error
		end  End
	}{
		{"greeting relayed", nil, EndClientClosed},
		{"backend failed", &BackendError{Err: errors.New("bad greeting")}, EndBackendReset},
		{"client failed", errors.New("bad request"), EndHandshakeFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, &Server{Name: "t", Pool: newPool(t, pool.RoundRobin, 0, be.addr),
				Terminate: greetNegotiator{tc.fail}})
			if tc.fail != nil {
				// The reset may come before the dial returns.
				if c, err := net.DialTimeout("tcp", p.addr, 5*time.Second); err == nil {
					c.SetDeadline(time.Now().Add(10 * time.Second))
					if line, err := bufio.NewReader(c).ReadString('\n'); err == nil {
						t.Errorf("a failed negotiation answered %q", line)
					}
					c.Close()
				}
				rec := p.log.waitEnd(t, tc.end)
				if !strings.Contains(rec["error"].(string), tc.fail.Error()) {
					t.Errorf("log line %v: want the error", rec)
				}
				return
			}
			c := dial(t, p.addr, "")
			c.SetDeadline(time.Now().Add(10 * time.Second))
			r := bufio.NewReader(c)
			line, err := r.ReadString('\n')
			if err != nil || line != "HELLO\n" {
				t.Fatalf("greeting %q, %v; want it through Negotiate", line, err)
			}
			c.Write([]byte("echo\n"))
			if line, err := r.ReadString('\n'); err != nil || line != "echo\n" {
				t.Fatalf("echo %q, %v", line, err)
			}
			c.CloseWrite()
			io.ReadAll(r)
			p.log.waitEnd(t, tc.end)
		})
	}
}
