package l7

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"sluice/internal/pool"
)

// h2cClient speaks HTTP/2 with prior knowledge, as curl
// --http2-prior-knowledge and gRPC clients do.
func h2cClient(t *testing.T) *http.Client {
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Proxy: nil, Protocols: protocols}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func TestH2CClientToHTTP1Backend(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(r.Proto)) }))
	p := newPool(t, pool.Options{}, be.addr)
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: p}}, Default: "p"})
	resp, body := get(t, h2cClient(t), "GET", px.url+"/h2", nil)
	if resp.Proto != "HTTP/2.0" || body != "HTTP/1.1" {
		t.Errorf("client spoke %s, backend saw %q; want HTTP/2.0 to the proxy, HTTP/1.1 to the backend", resp.Proto, body)
	}
	if rec := px.log.waitRequest(t, "/h2", byPath("/h2")); rec["proto"] != "HTTP/2.0" {
		t.Errorf("log line %v", rec)
	}
}

// TestH2CBackendStreamsWithTrailers is what gRPC needs: HTTP/2 to the
// backend, each message passed on as it comes (no buffering), trailers.
func TestH2CBackendStreamsWithTrailers(t *testing.T) {
	next := make(chan struct{})
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "Grpc-Status")
		w.Header().Set("Content-Type", "application/grpc")
		w.Write([]byte(r.Proto + " first;"))
		http.NewResponseController(w).Flush()
		select {
		case <-next:
		case <-r.Context().Done():
			return
		}
		w.Write([]byte("second"))
		w.Header().Set("Grpc-Status", "0")
	}))
	p := newPool(t, pool.Options{}, be.addr)
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: p, H2C: true}}, Default: "p"})
	resp, err := h2cClient(t).Get(px.url + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, len("HTTP/2.0 first;"))
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "HTTP/2.0 first;" {
		t.Fatalf("first message %q, %v: want it before the backend ends, over HTTP/2 to the backend", first, err)
	}
	close(next)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "second" || resp.Trailer.Get("Grpc-Status") != "0" {
		t.Errorf("rest %q, trailers %v", rest, resp.Trailer)
	}
}

// upgradeEcho answers an Upgrade request with 101 and then echoes raw
// bytes, as a WebSocket server would after its handshake.
func upgradeEcho(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") != "echo" {
		http.Error(w, "want Upgrade: echo", 400)
		return
	}
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	brw.Flush()
	io.Copy(c, brw)
}

// upgrade opens a connection through the proxy and upgrades it.
func upgrade(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return c, br
}

func TestUpgradePassThrough(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(upgradeEcho))
	p := newPool(t, pool.Options{}, be.addr)
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: p}}, Default: "p"})
	c, br := upgrade(t, px.addr)
	for _, msg := range []string{"ping\n", "pong\n"} {
		io.WriteString(c, msg)
		if got, err := br.ReadString('\n'); got != msg {
			t.Fatalf("echo %q, %v; want %q", got, err, msg)
		}
	}
	if p.Backends()[0].Active() != 1 {
		t.Errorf("an upgraded connection counts %d in flight, want 1", p.Backends()[0].Active())
	}
	c.Close()
	rec := px.log.waitRequest(t, "/ws", byPath("/ws"))
	if rec["status"] != 101.0 {
		t.Errorf("log line %v", rec)
	}
}

func TestShutdownDrainsThenCloses(t *testing.T) {
	release := make(chan struct{})
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			upgradeEcho(w, r)
			return
		}
		<-release
		w.Write([]byte("finished"))
	}))
	p := newPool(t, pool.Options{}, be.addr)
	s := &Server{Upstreams: map[string]Upstream{"p": {Pool: p}}, Default: "p", Logger: slog.New(slog.DiscardHandler)}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve([]*net.TCPListener{ln}) }()
	addr := ln.Addr().String()
	ws, wsr := upgrade(t, addr)

	c := client(t)
	got := make(chan string, 1)
	go func() {
		resp, err := c.Get("http://" + addr + "/slow")
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	eventually(t, 10*time.Second, "two requests in flight", func() bool { return p.Backends()[0].Active() == 2 })

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(ctx) }()
	// The request in flight finishes during the drain...
	eventually(t, 10*time.Second, "listener closed", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(release)
	if body := <-got; body != "finished" {
		t.Errorf("request in flight during the drain got %q", body)
	}
	// ...the upgraded connection is closed when the drain runs out.
	if err := <-shut; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want the drain to run out", err)
	}
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := wsr.ReadString('\n'); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Errorf("upgraded connection after the drain: read %v, want it closed", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if n := p.Backends()[0].Active(); n != 0 {
		t.Errorf("%d requests still counted after Shutdown", n)
	}
}
