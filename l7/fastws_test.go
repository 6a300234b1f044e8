package l7

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"sluice/internal/pool"
)

// wsEcho is a WebSocket server that echoes every message.
func wsEcho(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(4 << 20)
	for {
		typ, msg, err := c.Read(r.Context())
		if err != nil {
			return
		}
		if err := c.Write(r.Context(), typ, msg); err != nil {
			return
		}
	}
}

// TestWebSocketSpliced: a WebSocket through the fast path works both ways,
// and after the 101 the proxy moves its bytes with splice(2), not through
// user space: strace, attached to this process while 1 MiB messages go
// each way, sees splice calls. With -nethttp (net/http's hijacked
// connections are copied) the same count is zero.
func TestWebSocketSpliced(t *testing.T) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("strace is missing: apt-get install strace")
		}
		t.Skip("strace is missing")
	}
	be := startBackend(t, http.HandlerFunc(wsEcho))
	p := newPool(t, pool.Options{}, be.addr)
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: p}}, Default: "p"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+px.addr+"/ws", &websocket.DialOptions{HTTPClient: client(t)})
	if err != nil {
		t.Fatalf("dial through the proxy: %v", err)
	}
	defer c.CloseNow()
	c.SetReadLimit(4 << 20)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	echo := func(msg []byte) {
		t.Helper()
		if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("echo of %d bytes: %d bytes, %v", len(msg), len(got), err)
		}
	}
	echo([]byte("hello"))

	splices := traceSplices(t, strace, func() {
		big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
		for range 4 {
			echo(big)
		}
	})
	t.Logf("%d splice calls during 4 MiB of echoes", splices)
	if *netHTTPOnly {
		if splices != 0 {
			t.Errorf("net/http path: %d splice calls, want none (it copies)", splices)
		}
	} else if splices == 0 {
		t.Error("no splice calls: the upgraded connection was copied through user space")
	}
	c.Close(websocket.StatusNormalClosure, "")
	px.log.waitRequest(t, "/ws", func(r map[string]any) bool { return r["path"] == "/ws" && r["status"] == 101.0 })
}

// traceSplices runs f with strace attached to every thread of this
// process and returns the splice calls it saw.
func traceSplices(t *testing.T, strace string, f func()) int {
	t.Helper()
	out := t.TempDir() + "/strace.out"
	args := []string{"-f", "-qq", "-e", "trace=splice", "-o", out}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		args = append(args, "-p", task.Name())
	}
	cmd := exec.Command(strace, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Attached once the kernel names strace as this process's tracer.
	eventually(t, 10*time.Second, "strace attached", func() bool {
		b, _ := os.ReadFile("/proc/self/status")
		return !strings.Contains(string(b), "TracerPid:\t0\n")
	})
	f()
	cmd.Process.Signal(os.Interrupt) // detaches
	if err := cmd.Wait(); err != nil && !strings.Contains(err.Error(), "interrupt") {
		t.Logf("strace: %v: %s", err, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("strace wrote nothing: %v: %s", err, stderr.String())
	}
	return len(regexp.MustCompile(`(?m)splice\(`).FindAll(b, -1))
}
