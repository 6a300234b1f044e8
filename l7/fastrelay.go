package l7

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"sluice/internal/pool"
)

// relay writes the response whose head is in bk to the client, then its
// body as it comes, and gives the backend connection back to the pool
// when the response ended cleanly. It reports whether the client
// connection goes on.
func (fc *fastConn) relay(f *fwd, b *pool.Backend) bool {
	h, ex := &fc.h, &fc.ex
	r := &fc.bufs.resp
	bk := fc.bufs.bk[:]
	fc.status = r.status
	if r.status == http.StatusSwitchingProtocols && !h.upgrade {
		f.bc.Close()
		ex.err = fmt.Errorf("%w: 101 to a request that asked no upgrade", errBadResponse)
		return fc.local(http.StatusBadGateway, EndBackendReset, "")
	}
	mode, length := fc.bodyMode(r)
	if mode == bodyClose {
		fc.close = true
	}
	if s := fc.s; s.fast.draining.Load() {
		fc.close = true
	}
	e := &fc.bufs.rsp
	e.reset(r.fields[:r.n])
	for i := range r.n {
		e.drop[i] = r.drop(&r.fields[i])
	}
	if rw := ex.rewrite; rw != nil {
		rw.Response(e)
	}
	e.Set(requestIDHeader, ex.id)
	if mode == bodyChunked {
		e.add("Transfer-Encoding", "chunked")
	}
	if fc.close && r.status != http.StatusSwitchingProtocols {
		e.add("Connection", "close")
	}
	w := fc.bufs.wr[:0]
	w = append(w, "HTTP/1.1 "...)
	w = append(w, r.line...)
	w = append(w, "\r\n"...)
	w = e.appendTo(w)
	w = append(w, "\r\n"...)
	headLen := len(w)
	// The body bytes read with the head go in the same write.
	extra := bk[r.size:f.got]
	var chunks chunkScanner
	done := false
	switch mode {
	case bodyNone:
		done = true
	case bodyLength:
		n := int(min(int64(len(extra)), length))
		w = append(w, extra[:n]...)
		extra = extra[n:]
		length -= int64(n)
		done = length == 0
	case bodyChunked:
		n, fin, err := chunks.scan(extra)
		if err != nil {
			return fc.cutOff(f, w[:headLen], err)
		}
		w = append(w, extra[:n]...)
		extra, done = extra[n:], fin
	case bodyClose, bodyTunnel:
		w = append(w, extra...)
		extra = nil
	}
	fc.bufs.wr = w
	n, err := fc.c.Write(w)
	fc.out = int64(max(0, n-headLen))
	fc.consume(h.size + f.inBody)
	if err != nil {
		f.bc.Close()
		ex.end = EndClientAborted
		return false
	}
	if mode == bodyTunnel {
		fc.tunnel(f)
		return false
	}
	if !done {
		// The head's wait left a deadline on the backend: a body
		// may take as long as it takes.
		clearRead(f.bc, &f.bdl)
		if err := fc.streamBody(f, mode, length, &chunks); err != nil {
			return false
		}
	}
	if len(extra) == 0 && !r.close && mode != bodyClose {
		f.p.idle.put(b, f.bc, f.bdl)
	} else {
		f.bc.Close()
	}
	return true
}

// Response body framings.
const (
	bodyNone    = iota
	bodyLength  // Content-Length
	bodyChunked // passed on chunked, as it is
	bodyClose   // until the backend closes; so does the client's connection
	bodyTunnel  // 101: both ways, raw
)

func (fc *fastConn) bodyMode(r *respHead) (mode int, length int64) {
	switch {
	case r.status == http.StatusSwitchingProtocols:
		return bodyTunnel, 0
	case bodyless(fc.h.method, r.status):
		return bodyNone, 0
	case r.chunked:
		return bodyChunked, 0
	case r.contentLength == 0:
		return bodyNone, 0
	case r.contentLength > 0:
		return bodyLength, r.contentLength
	}
	return bodyClose, 0
}

// streamBody passes the rest of a response body on. A backend that fails
// mid-body leaves the client with a response cut short: its connection
// is closed, as net/http aborts a handler.
func (fc *fastConn) streamBody(f *fwd, mode int, length int64, chunks *chunkScanner) error {
	ex := &fc.ex
	switch mode {
	case bodyLength:
		n, err := io.CopyN(fc.c, f.bc, length) // spliced
		fc.out += n
		if err != nil {
			return fc.midBody(f, err)
		}
		return nil
	case bodyClose:
		n, err := io.Copy(fc.c, f.bc)
		fc.out += n
		if err != nil {
			return fc.midBody(f, err)
		}
		return nil
	}
	buf := fc.bufs.bk[:]
	for {
		n, err := f.bc.Read(buf)
		if n > 0 {
			k, done, serr := chunks.scan(buf[:n])
			m, werr := fc.c.Write(buf[:k])
			fc.out += int64(m)
			switch {
			case werr != nil:
				return fc.midBody(f, werr)
			case serr != nil:
				return fc.midBody(f, serr)
			case done && k < n:
				// Bytes past the response: the connection is
				// not in a state to reuse.
				f.bc.Close()
				f.bc = nil
				return nil
			case done:
				return nil
			}
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			ex.err = err
			return fc.midBody(f, err)
		}
	}
}

// midBody ends a response cut off after its head was sent.
func (fc *fastConn) midBody(f *fwd, err error) error {
	if f.bc != nil {
		f.bc.Close()
	}
	fc.close = true
	if fc.clientGone() {
		fc.ex.end = EndClientAborted
		return err
	}
	fc.ex.end, fc.ex.err = EndBackendReset, err
	return err
}

// cutOff answers a response whose body was malformed before any of it
// reached the client.
func (fc *fastConn) cutOff(f *fwd, _ []byte, err error) bool {
	f.bc.Close()
	fc.ex.err = err
	return fc.local(http.StatusBadGateway, EndBackendReset, "")
}

var _ = errors.New
var _ = strconv.Itoa
