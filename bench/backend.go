package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// The first byte a client sends picks what the backend does with the rest
// of the connection, so one backend address (one proxy config) serves
// every TCP scenario.
const (
	modeSink   = 'S' // read and count everything until EOF
	modeSource = 'R' // write as fast as the client reads, until it closes
	modeEcho   = 'E' // write back whatever arrives, until EOF
	modeClose  = 'C' // read one request, answer it, close first
	// modeHTTP is the first letter of "GET": the HTTP scenarios' requests
	// pick an HTTP/1.1 server (see http.go) without a mode byte of their
	// own, which an HTTP proxy would not pass on.
	modeHTTP = 'G'
)

// reqSize is the request and response size of the request scenarios.
const reqSize = 64

// backend is the in-process TCP server behind every system. Close stops it
// and waits for all its goroutines.
type backend struct {
	ln        net.Listener
	wg        sync.WaitGroup
	sinkBytes atomic.Int64 // bytes received by sink connections
	active    atomic.Int64 // open connections

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// startBackend listens on a free loopback port and serves until Close.
func startBackend() (*backend, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("starting backend: %w", err)
	}
	b := &backend{ln: ln, conns: map[net.Conn]struct{}{}}
	b.wg.Go(b.serve)
	return b, nil
}

// addr is the backend's listening address.
func (b *backend) addr() string { return b.ln.Addr().String() }

// serve accepts until the listener is closed.
func (b *backend) serve() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: the scenario that caused it will see
			// its dials fail; keep serving the others.
			continue
		}
		b.mu.Lock()
		b.conns[c] = struct{}{}
		b.mu.Unlock()
		b.active.Add(1)
		b.wg.Go(func() {
			defer b.forget(c)
			b.handle(c.(*net.TCPConn))
		})
	}
}

// forget closes c and drops it from the set Close would close.
func (b *backend) forget(c net.Conn) {
	c.Close()
	b.mu.Lock()
	delete(b.conns, c)
	b.mu.Unlock()
	b.active.Add(-1)
}

// handle serves one connection in the mode its first byte names.
func (b *backend) handle(c *net.TCPConn) {
	buf := make([]byte, 512)
	n, err := io.ReadAtLeast(c, buf, 1)
	if err != nil {
		return
	}
	mode, rest := buf[0], buf[1:n]
	switch mode {
	case modeSink:
		b.sinkBytes.Add(int64(len(rest)))
		b.sink(c)
	case modeSource:
		source(c)
	case modeEcho:
		if len(rest) > 0 {
			if _, err := c.Write(rest); err != nil {
				return
			}
		}
		echo(c, buf)
	case modeHTTP:
		serveHTTP(c, buf[:n])
	case modeClose:
		req := make([]byte, reqSize)
		copy(req, rest)
		if len(rest) < reqSize {
			if _, err := io.ReadFull(c, req[len(rest):]); err != nil {
				return
			}
		}
		c.Write(req)
	}
}

// sink counts bytes until EOF, with a large buffer so the count is not
// limited by the number of read calls.
func (b *backend) sink(c *net.TCPConn) {
	buf := make([]byte, 256<<10)
	for {
		n, err := c.Read(buf)
		b.sinkBytes.Add(int64(n))
		if err != nil {
			return
		}
	}
}

// source writes 256 KiB buffers until a write fails: the client closed
// (the proxy passes on its close as a reset or EPIPE here) or Close did.
func source(c *net.TCPConn) {
	buf := make([]byte, 256<<10)
	for {
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

// echo writes back everything it reads until EOF or an error.
func echo(c *net.TCPConn, buf []byte) {
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Close stops accepting, closes every open connection and waits for all
// connection goroutines.
func (b *backend) Close() error {
	err := b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
	return err
}
