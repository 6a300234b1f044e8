//go:build !linux

package listen

import (
	"errors"
	"syscall"
)

// reusePort refuses to run: sluice needs Linux's SO_REUSEPORT balancing.
func reusePort(network, address string, c syscall.RawConn) error {
	return errors.New("listen: SO_REUSEPORT listeners need Linux")
}
