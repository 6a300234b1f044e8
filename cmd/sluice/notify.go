package main

import (
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// notifier tells systemd (a Type=notify service) how sluice is doing,
// through the datagram socket in $NOTIFY_SOCKET (sd_notify(3)). Without
// that variable it does nothing.
type notifier struct {
	addr *net.UnixAddr
}

func newNotifier() notifier {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return notifier{}
	}
	if path[0] == '@' {
		// An abstract socket: its name starts with a NUL byte.
		path = "\x00" + path[1:]
	}
	return notifier{addr: &net.UnixAddr{Name: path, Net: "unixgram"}}
}

// send sends state (such as "READY=1"); errors are returned for the log,
// and never stop sluice.
func (n notifier) send(state string) error {
	if n.addr == nil {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("notifying systemd: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("notifying systemd: %w", err)
	}
	return nil
}

// reloading is the state sent when a reload starts: systemd (253 and
// later) wants the monotonic time with it, to match it with READY=1.
func reloading() string {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", time.Duration(ts.Nano())/time.Microsecond)
}
