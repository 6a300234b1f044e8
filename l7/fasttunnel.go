package l7

import (
	"io"
	"sync"
	"time"
)

// tunnel carries an upgraded connection (WebSocket or any protocol after a
// 101) both ways until both directions end. Both ends are raw TCP
// connections, so io.Copy splices: the kernel moves the bytes. Bytes the
// client sent behind its request head go first. Each direction
// half-closes its destination when its source ends, as l4 does.
func (fc *fastConn) tunnel(f *fwd) {
	fc.ex.upgraded = true
	fc.close = true
	clearRead(fc.c, &fc.rdl)
	clearRead(f.bc, &f.bdl)
	if early := fc.in[fc.start:fc.end]; len(early) > 0 {
		n, err := f.bc.Write(early)
		fc.bytesIn += int64(n)
		fc.start, fc.end = 0, 0
		if err != nil {
			f.bc.Close()
			return
		}
	}
	var wg sync.WaitGroup
	var in int64
	wg.Go(func() {
		in, _ = io.Copy(f.bc, fc.c)
		f.bc.CloseWrite()
	})
	out, _ := io.Copy(fc.c, f.bc)
	fc.c.CloseWrite()
	// The backend is done; a client that keeps its side open is given
	// the idle timeout to close it.
	if d := orDefault(fc.s.IdleTimeout, DefaultIdleTimeout); d > 0 {
		fc.c.SetReadDeadline(time.Now().Add(d))
	}
	wg.Wait()
	fc.bytesIn += in
	fc.out += out
	f.bc.Close()
}
