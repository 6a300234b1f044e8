package l7

import (
	"net"
	"sync"
)

// limitListener caps the connections accepted across a listener's sockets:
// past the cap Accept waits, and new clients wait in the kernel's accept
// queue, as on a TCP listener with max_connections. net/http has no cap of
// its own.
type limitListener struct {
	*net.TCPListener
	slots chan struct{} // shared by the listener's sockets; a token per open connection
	done  chan struct{} // closed by Close, to end a wait for a slot
	once  sync.Once
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.TCPListener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, slots: l.slots}, nil
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.TCPListener.Close()
}

// limitConn gives its slot back when closed, once, however often Close is
// called (net/http and a hijacking handler may both close it).
type limitConn struct {
	net.Conn
	slots chan struct{}
	once  sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { <-c.slots })
	return err
}
