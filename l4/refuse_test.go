package l4

import (
	"errors"
	"net"
	"syscall"
	"testing"

	"sluice/internal/pool"
)

// TestClientWithoutBackendIsReset checks issue 8's rule: a client whose
// connection cannot be given a backend gets a reset, never a clean end of
// file that a database client would take for a server that hung up on it.
// Each case is tried several times, as the old path's outcome depended on
// timing.
func TestClientWithoutBackendIsReset(t *testing.T) {
	resetter := func(t *testing.T) string {
		return startBackend(t, func(c *net.TCPConn) {
			c.SetLinger(0)
		}).addr
	}
	cases := []struct {
		name string
		pool func(t *testing.T) Picker
		end  End
	}{
		{"no backend up", func(t *testing.T) Picker {
			return healthPool(t, pool.Options{Checked: true}, deadPort(t))
		}, EndNoBackend},
		{"every connect refused", func(t *testing.T) Picker {
			return newPool(t, pool.RoundRobin, 1, deadPort(t), deadPort(t))
		}, EndConnectFailed},
		{"backend resets at once", func(t *testing.T) Picker {
			return newPool(t, pool.RoundRobin, 0, resetter(t))
		}, EndBackendReset},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, &Server{Pool: tc.pool(t)})
			for i := range 20 {
				if err := refused(t, p.addr); !errors.Is(err, syscall.ECONNRESET) {
					t.Fatalf("try %d: client saw %v, want a reset", i, err)
				}
			}
			p.log.waitEnd(t, tc.end)
		})
	}
}
