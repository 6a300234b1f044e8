package l4

import (
	"sync"

	"golang.org/x/sys/unix"
)

// liveConns returns what the loops show of the connections they proxy,
// read on the loops' goroutines.
func liveConns(s *Server) []connView {
	var mu sync.Mutex
	var out []connView
	s.onLoops(func(l *loop) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range l.conns {
			if c.fd[sideClient] < 0 || c.phase != phaseProxying {
				continue
			}
			v := connView{client: c.peer}
			for i := range c.dirs {
				d := &c.dirs[i]
				switch {
				case d.done:
					v.dirs[i] = dirDone
				case !d.pending() && !d.eof && c.ready[i]&canRead == 0 && d.p == nil:
					v.dirs[i] = dirWaiting
				default:
					v.dirs[i] = dirBusy
				}
			}
			out = append(out, v)
		}
	})
	return out
}

// setClientSendBuffer sets SO_SNDBUF on the proxy's socket towards each
// client.
func setClientSendBuffer(s *Server, n int) {
	s.onLoops(func(l *loop) {
		for _, c := range l.conns {
			if c.fd[sideClient] >= 0 {
				unix.SetsockoptInt(c.fd[sideClient], unix.SOL_SOCKET, unix.SO_SNDBUF, n)
			}
		}
	})
}
