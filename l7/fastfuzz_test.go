package l7

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"slices"
	"testing"
)

var headSeeds = []string{
	"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /a/b?c=d&e HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
	"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n",
	"GET / HTTP/1.1\nHost: x\n\n",
	"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
	"GET /%41%2f HTTP/1.1\r\nHost: [::1]:80\r\nConnection: close, X-Y\r\nX-Y: 1\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n",
	"GET / HTTP/1.1\r\nhOsT:  x \r\nContent-Length: 00\r\n\r\n",
}

// FuzzParseHead checks the fast path's head parser against net/http's:
// whatever the fast path serves, net/http must read as the same request
// (method, target, path, Host, framing and fields). A head the parser
// hands off is net/http's to judge, so it is not compared.
func FuzzParseHead(f *testing.F) {
	for _, s := range headSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var h reqHead
		if parseHead(b, &h) != headOK {
			return
		}
		if h.size <= 0 || h.size > len(b) {
			t.Fatalf("head size %d of %d bytes", h.size, len(b))
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b[:h.size])))
		if err != nil {
			t.Fatalf("fast path serves %q; net/http refuses it: %v", b[:h.size], err)
		}
		if req.Method != string(h.method) || req.RequestURI != string(h.target) || req.Host != string(h.host) {
			t.Fatalf("fast path read %q %q host %q; net/http %q %q host %q", h.method, h.target, h.host, req.Method, req.RequestURI, req.Host)
		}
		if p, ok := unescapePath(nil, h.path); ok && string(p) != req.URL.Path {
			t.Fatalf("path %q, net/http %q", p, req.URL.Path)
		}
		switch {
		case h.chunked:
			if !slices.Equal(req.TransferEncoding, []string{"chunked"}) {
				t.Fatalf("fast path reads a chunked body; net/http %v, length %d", req.TransferEncoding, req.ContentLength)
			}
		case h.contentLength >= 0:
			if req.ContentLength != h.contentLength || len(req.TransferEncoding) > 0 {
				t.Fatalf("fast path reads %d body bytes; net/http %d %v", h.contentLength, req.ContentLength, req.TransferEncoding)
			}
		default:
			if req.ContentLength != 0 || len(req.TransferEncoding) > 0 {
				t.Fatalf("fast path reads no body; net/http %d %v", req.ContentLength, req.TransferEncoding)
			}
		}
		n := 0
		for _, vs := range req.Header {
			n += len(vs)
		}
		n++ // net/http moves Host out of the header...
		if h.chunked {
			n++ // ...and Transfer-Encoding
		}
		if n != h.n {
			t.Fatalf("fast path read %d fields, net/http %d: %v", h.n, n, req.Header)
		}
		for i := range h.n {
			fd := &h.fields[i]
			if fd.kind == fieldHost || fd.kind == fieldTransferEncoding {
				continue
			}
			if !slices.Contains(req.Header.Values(string(fd.name)), string(fd.value)) {
				t.Fatalf("field %q: %q, net/http %q", fd.name, fd.value, req.Header.Values(string(fd.name)))
			}
		}
	})
}

var chunkSeeds = []string{
	"0\r\n\r\n",
	"3\r\nabc\r\n0\r\n\r\n",
	"3;ext=1\r\nabc\r\nA \r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n",
	"zz\r\n",
	"3\r\nabcd\r\n",
	"3\nabc\n0\n\n",
	"fffffffffffffffff\r\n",
	"1\r\na\r\n0\r\nbad trailer\r\n\r\n",
}

// FuzzChunkScanner checks the chunked framing scanner: fed in two pieces
// it must decide as when fed whole, and whatever it accepts net/http's
// chunked reader must read to the same data length.
func FuzzChunkScanner(f *testing.F) {
	for _, s := range chunkSeeds {
		f.Add([]byte(s), uint16(2))
	}
	f.Fuzz(func(t *testing.T, b []byte, split uint16) {
		var whole chunkScanner
		n, done, err := whole.scan(b)
		var parts chunkScanner
		at := int(split) % (len(b) + 1)
		n1, done1, err1 := parts.scan(b[:at])
		n2, done2, err2 := 0, done1, err1
		if !done1 && err1 == nil {
			n2, done2, err2 = parts.scan(b[at:])
		}
		if (err == nil) != (err2 == nil) || done != done2 || err == nil && n != n1+n2 || whole.data != parts.data {
			t.Fatalf("whole: %d %v %v data %d; split at %d: %d+%d %v %v data %d", n, done, err, whole.data, at, n1, n2, done2, err2, parts.data)
		}
		if !done || err != nil {
			return
		}
		data, rerr := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(b[:n])))
		if rerr != nil || int64(len(data)) != whole.data {
			t.Fatalf("scanner accepts %q with %d data bytes; net/http reads %d, %v", b[:n], whole.data, len(data), rerr)
		}
	})
}

// FuzzParseResponse checks the backend response parser against
// net/http's: a head it passes on, net/http reads with the same status
// and framing.
func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
		"HTTP/1.0 204 No Content\r\nConnection: keep-alive\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 404\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r respHead
		st, err := parseResponse(b, &r)
		if err != nil || st != headOK {
			return
		}
		resp, rerr := http.ReadResponse(bufio.NewReader(bytes.NewReader(b[:r.size])), &http.Request{Method: "GET"})
		if rerr != nil {
			t.Fatalf("fast path passes on %q; net/http refuses it: %v", b[:r.size], rerr)
		}
		if resp.StatusCode != r.status {
			t.Fatalf("status %d, net/http %d", r.status, resp.StatusCode)
		}
		if r.chunked != slices.Equal(resp.TransferEncoding, []string{"chunked"}) {
			t.Fatalf("chunked %v, net/http %v", r.chunked, resp.TransferEncoding)
		}
		if !r.chunked && r.contentLength >= 0 && r.status >= 200 && r.status != 204 && r.status != 304 && resp.ContentLength != r.contentLength {
			t.Fatalf("length %d, net/http %d", r.contentLength, resp.ContentLength)
		}
	})
}
