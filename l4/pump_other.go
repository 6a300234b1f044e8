//go:build !linux

package l4

import (
	"errors"
	"io"
)

// pump copies through user space: splice(2) is Linux's. It exists so the
// package builds and its tests run elsewhere; sluice is deployed on Linux.
func (c *conn) pump(d *dir) stop {
	buf := make([]byte, 32<<10)
	for {
		n, err := d.src.c.Read(buf)
		if n > 0 {
			d.moved()
			m, werr := d.dst.c.Write(buf[:n])
			d.n += int64(m)
			if werr != nil {
				return stopDstErr
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			return stopEOF
		case err != nil:
			if why, again := d.readWaitFailed(err); !again {
				if why == stopClosed && !isClosed(err) {
					return stopSrcErr
				}
				return why
			}
		}
	}
}
