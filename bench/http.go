package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"
)

// The L7 scenarios send HTTP requests through each proxy's HTTP listener
// to the backend, which answers them in its HTTP mode (serveHTTP): a
// 64-byte body, as the L4 request scenarios exchange. The HTTP/1.1 loads
// are the bench's own clients, which parse no more than they must, so that
// the load's CPU does not limit the proxies; HTTP/2 is h2load's.

// HTTP load shapes, the L4 ones where they have a twin.
const (
	httpKeepAliveConns = keepAliveConns
	httpNewConnClients = newConnClients
	h2Clients          = 8  // h2load -c: connections
	h2Streams          = 16 // h2load -m: requests in flight on each
)

var (
	httpBody = bytes.Repeat([]byte("x"), reqSize)
	// httpGet is the request of every HTTP/1.1 load; httpGetClose asks
	// for the connection's close after the response, as a client making
	// one request per connection does.
	httpGet      = []byte("GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: sluice-bench\r\n\r\n")
	httpGetClose = []byte("GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: sluice-bench\r\nConnection: close\r\n\r\n")
)

// serveHTTP is the backend's HTTP/1.1 server: it answers each request head
// with 200 and httpBody, keeps the connection open unless the request
// said Connection: close, and flushes once per batch of pipelined
// requests. first is what the mode byte arrived with (the request's
// start). Requests have no body: the loads send GETs.
func serveHTTP(c *net.TCPConn, first []byte) {
	r := bufio.NewReader(io.MultiReader(bytes.NewReader(bytes.Clone(first)), c))
	w := bufio.NewWriter(c)
	for {
		// The cached-hit scenarios' paths get a cacheable response.
		line, _ := r.Peek(len("GET /cached/100k"))
		cached := cachedBody(line)
		closing, err := readHead(r, "GET ")
		if err != nil {
			return
		}
		if cached != nil {
			writeCached(w, cached, closing)
		} else {
			w.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 64\r\n")
			if closing {
				w.WriteString("Connection: close\r\n")
			}
			w.WriteString("\r\n")
			w.Write(httpBody)
		}
		if r.Buffered() == 0 || closing {
			if w.Flush() != nil || closing {
				return
			}
		}
	}
}

// errBadHTTP says a head did not start as the bench expects.
var errBadHTTP = errors.New("unexpected HTTP head")

// readHead reads one HTTP/1.1 head whose first line starts with start,
// and returns its Content-Length (-1 without one) and whether it asks for
// the connection's close.
func readHead(r *bufio.Reader, start string) (closing bool, err error) {
	_, closing, err = readHeadLength(r, start)
	return closing, err
}

func readHeadLength(r *bufio.Reader, start string) (length int, closing bool, err error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return -1, false, err
	}
	if !bytes.HasPrefix(line, []byte(start)) {
		return -1, false, fmt.Errorf("%w: %q", errBadHTTP, bytes.TrimSpace(line))
	}
	length = -1
	for {
		line, err = r.ReadSlice('\n')
		if err != nil {
			return -1, false, err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			return length, closing, nil
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return -1, false, fmt.Errorf("%w: Content-Length %q", errBadHTTP, value)
			}
		case bytes.EqualFold(name, []byte("Connection")):
			closing = closing || bytes.Contains(bytes.ToLower(value), []byte("close"))
		}
	}
}

// readResponse reads one 200 response with a Content-Length body and says
// whether the server will close the connection after it.
func readResponse(r *bufio.Reader) (closing bool, err error) {
	n, closing, err := readHeadLength(r, "HTTP/1.1 200 ")
	if err != nil {
		return false, fmt.Errorf("reading response: %w", err)
	}
	if n < 0 {
		return false, fmt.Errorf("reading response: %w: no Content-Length", errBadHTTP)
	}
	if _, err := r.Discard(n); err != nil {
		return false, fmt.Errorf("reading response body: %w", err)
	}
	return closing, nil
}

// httpConn is a client connection of the HTTP/1.1 loads.
type httpConn struct {
	c         *net.TCPConn
	r         *bufio.Reader
	stopAfter func() bool
}

// dialHTTP connects to addr; the connection's deadline is set when ctx is
// done, as dial does.
func dialHTTP(ctx context.Context, addr string) (*httpConn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", addr, err)
	}
	c := nc.(*net.TCPConn)
	return &httpConn{c: c, r: bufio.NewReader(c), stopAfter: context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })}, nil
}

func (h *httpConn) Close() error {
	h.stopAfter()
	return h.c.Close()
}

// get makes one request and reads its response.
func (h *httpConn) get(req []byte) (closing bool, err error) {
	if _, err := h.c.Write(req); err != nil {
		return false, fmt.Errorf("writing request: %w", err)
	}
	return readResponse(h.r)
}

// httpKeepAlive sends requests over conns persistent connections, one
// outstanding per connection, and reports requests per second.
func httpKeepAlive(ctx context.Context, t target, o runOpts, conns int) (map[string]float64, error) {
	return keepAliveGets(ctx, t, o, conns, httpGet)
}

// keepAliveGets is httpKeepAlive with req as every request.
func keepAliveGets(ctx context.Context, t target, o runOpts, conns int, req []byte) (map[string]float64, error) {
	var done atomic.Int64
	w, err := measure(ctx, t, o, conns, done.Load, func(ctx context.Context, _ int) error {
		h, err := dialHTTP(ctx, t.httpAddr)
		if err != nil {
			return err
		}
		defer h.Close()
		for ctx.Err() == nil {
			closing, err := h.get(req)
			if err != nil {
				return err
			}
			if closing {
				return errors.New("the proxy closed a keep-alive connection")
			}
			done.Add(1)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return map[string]float64{"rps": w.rate, "cpu": w.cpuPct}, nil
}

// httpNewConns makes one request per connection with n concurrent
// clients. The request asks for Connection: close, so the proxy closes
// first and TIME_WAIT stays on its side, not on the client's ports.
func httpNewConns(ctx context.Context, t target, o runOpts, n int) (map[string]float64, error) {
	var done atomic.Int64
	w, err := measure(ctx, t, o, n, done.Load, func(ctx context.Context, _ int) error {
		for ctx.Err() == nil {
			if err := oneHTTPExchange(ctx, t.httpAddr); err != nil {
				return err
			}
			done.Add(1)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return map[string]float64{"cps": w.rate, "cpu": w.cpuPct}, nil
}

// oneHTTPExchange connects, makes one request and waits for the proxy's
// close.
func oneHTTPExchange(ctx context.Context, addr string) error {
	h, err := dialHTTP(ctx, addr)
	if err != nil {
		return err
	}
	defer h.Close()
	if _, err := h.get(httpGetClose); err != nil {
		return err
	}
	if _, err := h.r.ReadByte(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("waiting for the proxy's close: %v", err)
	}
	return nil
}

// httpLatency sends requests at a fixed total rate over conns keep-alive
// connections, paced as the L4 latency scenario, and reports p50 and p99.
func httpLatency(ctx context.Context, t target, o runOpts, rate float64, conns int) (map[string]float64, error) {
	return pacedGets(ctx, t, o, rate, conns, httpGet)
}

// pacedGets is httpLatency with req as every request.
func pacedGets(ctx context.Context, t target, o runOpts, rate float64, conns int, req []byte) (map[string]float64, error) {
	hs := make([]*httpConn, 0, conns)
	defer func() {
		for _, h := range hs {
			h.Close()
		}
	}()
	cs := make([]*net.TCPConn, conns)
	rts := make([]func() error, conns)
	for i := range conns {
		h, err := dialHTTP(ctx, t.httpAddr)
		if err != nil {
			return nil, err
		}
		hs = append(hs, h)
		// One request first, so that every connection is known to reach
		// the backend before the schedule starts.
		if _, err := h.get(req); err != nil {
			return nil, err
		}
		cs[i] = h.c
		rts[i] = func() error { _, err := h.get(req); return err }
	}
	return paced(ctx, o, rate, cs, rts)
}

// h2FinishedLine is h2load's summary of a run: "finished in 3.00s,
// 81234.50 req/s, 5.12MB/s".
var (
	h2FinishedLine = regexp.MustCompile(`finished in [^,]+, ([0-9.]+) req/s`)
	h2RequestsLine = regexp.MustCompile(`requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored`)
)

// h2Load runs h2load over h2c (prior knowledge) through t's HTTP/2
// listener and reports its requests per second over the measured window
// and the proxy's CPU over the same window.
func h2Load(ctx context.Context, t target, o runOpts, bin string) (map[string]float64, error) {
	cmd := exec.CommandContext(ctx, bin, "-c", strconv.Itoa(h2Clients), "-m", strconv.Itoa(h2Streams),
		"--warm-up-time", fmt.Sprintf("%dms", o.warm.Milliseconds()),
		"-D", fmt.Sprintf("%dms", o.dur.Milliseconds()), "http://"+t.h2Addr+"/bench")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("running h2load: %w", err)
	}
	u0, uerr := procUsage{}, error(nil)
	t0 := time.Now()
	if err := sleepCtx(ctx, o.warm); err == nil {
		u0, uerr = usage(t)
		t0 = time.Now()
	}
	werr := cmd.Wait()
	u1, err := usage(t)
	elapsed := time.Since(t0)
	if werr != nil || uerr != nil || err != nil {
		return nil, fmt.Errorf("h2load: %w: %s", errors.Join(werr, uerr, err), lastLines(out.Bytes(), 5))
	}
	fin := h2FinishedLine.FindSubmatch(out.Bytes())
	reqs := h2RequestsLine.FindSubmatch(out.Bytes())
	if fin == nil || reqs == nil {
		return nil, fmt.Errorf("h2load: no summary: %s", lastLines(out.Bytes(), 5))
	}
	if string(reqs[2]) != "0" || string(reqs[3]) != "0" || string(reqs[1]) == "0" {
		return nil, fmt.Errorf("h2load: requests failed: %s", reqs[0])
	}
	rps, _ := strconv.ParseFloat(string(fin[1]), 64)
	m := map[string]float64{"rps": rps, "cpu": math.NaN()}
	if t.proc != nil {
		m["cpu"] = float64(u1.cpuTicks-u0.cpuTicks) / clockTicks / elapsed.Seconds() * 100
	}
	return m, nil
}
