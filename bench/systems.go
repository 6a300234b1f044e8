package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// system is one way for the load to reach the backend: directly, or
// through a proxy that the bench runs as its own process from a config it
// writes. Each protocol a proxy carries is a listener of its config on the
// same address (UDP ports are separate from TCP's), not a new system.
type system struct {
	key  string // id used by -systems and in the CSV
	name string // column heading
	// protos are the scenario protocols the system's config carries
	// listeners for; nil means all (direct).
	protos []string
	// file is the config file name; empty for direct, which has no process.
	file string
	// config renders the config file.
	config func(p proxyParams) string
	// argv is the command line that runs bin with the config at cfg.
	argv func(bin, cfg string, p proxyParams) []string
	// env is added to the proxy's environment.
	env func(p proxyParams) []string
}

// speaks says whether the system can run scenarios of protocol proto.
func (s *system) speaks(proto string) bool {
	return s.protos == nil || slices.Contains(s.protos, proto)
}

// proxyParams is what a proxy config is rendered from.
type proxyParams struct {
	listen  string // frontend address the load connects to
	backend string // the in-process backend
	cores   int    // threads, workers or GOMAXPROCS
	dir     string // run directory for pid files and logs
}

// Timeouts shared by all proxies so that none of them closes a held idle
// connection or gives up on a slow dial sooner than the others.
const (
	idleTimeout    = "10m"
	connectTimeout = "5s"
	// udpSessionTimeout ends a UDP session idle for this long: sluice's
	// session_timeout and nginx's proxy_timeout, so that neither holds
	// sessions forever nor ends a live flow's.
	udpSessionTimeout = "30s"
	// udpReadBuffer is the receive buffer of each UDP listening socket:
	// sluice always asks for 4 MiB (internal/listen.UDPReadBuffer); nginx
	// gets the same through rcvbuf. The kernel caps both at
	// net.core.rmem_max.
	udpReadBuffer = "4m"
)

var (
	directSystem = &system{key: "direct", name: "direct"}

	sluiceSystem = &system{
		key: "sluice", name: "sluice", file: "sluice.toml", protos: []string{"tcp", "udp"},
		config: func(p proxyParams) string {
			return fmt.Sprintf(`drain_timeout = "1s"

[log]
level = "error"

[listeners.bench]
bind = %q
protocol = "tcp"
pool = "b"
sockets = %d
idle_timeout = %q

# UDP on the same address and port; the UDP echo backend shares the TCP
# backend's. responses = 0 (the default, as nginx's unset proxy_responses):
# a flow is a stream of datagrams, each echoed once.
[listeners.bench_udp]
bind = %q
protocol = "udp"
pool = "b"
sockets = %d
session_timeout = %q

[pools.b]
balance = "round_robin"

[[pools.b.backends]]
address = %q
`, p.listen, p.cores, idleTimeout, p.listen, p.cores, udpSessionTimeout, p.backend)
		},
		argv: func(bin, cfg string, _ proxyParams) []string { return []string{bin, "-c", cfg} },
		env: func(p proxyParams) []string {
			return []string{"GOMAXPROCS=" + strconv.Itoa(p.cores)}
		},
	}

	haproxySystem = &system{
		key: "haproxy", name: "HAProxy", file: "haproxy.cfg", protos: []string{"tcp"}, // 2.6 has no UDP
		config: func(p proxyParams) string {
			return fmt.Sprintf(`# HAProxy at its best on a TCP relay: forced splice both ways (splice-auto
# hardly splices on loopback), one thread per core given to the proxy.
global
    nbthread %d
    # With strict-limits (on by default since 2.3) HAProxy refuses to start
    # if it cannot raise its fd limit to 2*maxconn plus 2 per splice pipe
    # (maxpipes defaults to maxconn/4): 7500 needs about 18,800 of the
    # 20,000 the machine allows a process.
    maxconn 7500

defaults
    mode tcp
    maxconn 7500
    timeout connect %s
    timeout client %s
    timeout server %s
    option splice-request
    option splice-response

frontend bench
    bind %s
    default_backend b

backend b
    server s1 %s
`, p.cores, connectTimeout, idleTimeout, idleTimeout, p.listen, p.backend)
		},
		argv: func(bin, cfg string, _ proxyParams) []string { return []string{bin, "-db", "-f", cfg} },
	}

	nginxSystem = &system{
		key: "nginx", name: "nginx", file: "nginx.conf", protos: []string{"tcp", "udp"},
		config: func(p proxyParams) string {
			return fmt.Sprintf(`# nginx stream proxy: one worker per core given to the proxy, a
# SO_REUSEPORT socket per worker so the kernel spreads connections.
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
worker_processes %d;
worker_rlimit_nofile 20000;
pid %s;
error_log %s error;

events {
    worker_connections 19000;
}

stream {
    upstream b {
        server %s;
    }
    server {
        listen %s reuseport;
        proxy_pass b;
        proxy_connect_timeout %s;
        proxy_timeout %s;
    }
    # UDP on the same address and port, with sluice's receive buffer.
    # reuseport also keeps each client's datagrams in one session (and
    # worker). proxy_responses is left unset (no limit), as sluice's
    # responses: each flow is a stream of datagrams, each echoed once,
    # and a session ends after proxy_timeout without one.
    server {
        listen %s udp reuseport rcvbuf=%s;
        proxy_pass b;
        proxy_timeout %s;
    }
}
`, p.cores, filepath.Join(p.dir, "nginx.pid"), filepath.Join(p.dir, "nginx-error.log"),
				p.backend, p.listen, connectTimeout, idleTimeout, p.listen, udpReadBuffer, udpSessionTimeout)
		},
		argv: func(bin, cfg string, p proxyParams) []string {
			// -e: nginx opens its default error log before it reads the
			// config, and that path may not be writable.
			return []string{bin, "-e", filepath.Join(p.dir, "nginx-error.log"), "-p", p.dir + "/", "-c", cfg}
		},
	}

	allSystems = []*system{directSystem, sluiceSystem, haproxySystem, nginxSystem}
)

// proxyProc is a running proxy; the bench owns it and stops it.
type proxyProc struct {
	sys     *system
	addr    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has been waited for
	waitErr error
}

// startProxy writes sys's config into p.dir, starts bin (under taskset when
// cpus is not empty) and waits until a connection through it reaches the
// backend.
func startProxy(ctx context.Context, sys *system, bin string, p proxyParams, cpus string) (*proxyProc, error) {
	cfg := filepath.Join(p.dir, sys.file)
	if err := os.WriteFile(cfg, []byte(sys.config(p)), 0o644); err != nil {
		return nil, fmt.Errorf("writing %s config: %w", sys.name, err)
	}
	argv := sys.argv(bin, cfg, p)
	if cpus != "" {
		argv = append([]string{"taskset", "-c", cpus}, argv...)
	}
	logPath := filepath.Join(p.dir, sys.key+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating %s log: %w", sys.name, err)
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = os.Environ()
	if sys.env != nil {
		cmd.Env = append(cmd.Env, sys.env(p)...)
	}
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", sys.name, err)
	}
	pp := &proxyProc{sys: sys, addr: p.listen, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { // joined by stop, which waits on done
		pp.waitErr = cmd.Wait()
		close(pp.done)
	}()
	if err := pp.waitReady(ctx, 10*time.Second); err != nil {
		pp.stop()
		return nil, err
	}
	return pp, nil
}

// waitReady polls until one echo through the proxy succeeds.
func (pp *proxyProc) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		err := probe(pp.addr)
		if err == nil {
			return nil
		}
		select {
		case <-pp.done:
			return fmt.Errorf("starting %s: exited (%v): %s", pp.sys.name, pp.waitErr, tail(pp.logPath))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("starting %s: not ready after %v: %w: %s", pp.sys.name, limit, err, tail(pp.logPath))
		}
	}
}

// probe makes one echo exchange with the backend through addr.
func probe(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte{modeEcho, 'x'}); err != nil {
		return err
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		return fmt.Errorf("probing %s: %w", addr, err)
	}
	return nil
}

// pid is the proxy's process id; the usage of its descendants counts too.
func (pp *proxyProc) pid() int { return pp.cmd.Process.Pid }

// stop asks the proxy's process group to terminate, kills it after five
// seconds, and reports an unclean exit.
func (pp *proxyProc) stop() error {
	pgid := pp.cmd.Process.Pid // the child leads its own group (childAttr)
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-pp.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-pp.done
		return fmt.Errorf("stopping %s: killed after 5s", pp.sys.name)
	}
	// Workers that outlived their master would keep ports and fds.
	syscall.Kill(-pgid, syscall.SIGKILL)
	if !cleanExit(pp.waitErr) {
		return fmt.Errorf("stopping %s: %w: %s", pp.sys.name, pp.waitErr, tail(pp.logPath))
	}
	return nil
}

// cleanExit accepts status 0 and death by the SIGTERM that stop sent:
// HAProxy in foreground mode does not catch SIGTERM.
func cleanExit(err error) bool {
	var ee *exec.ExitError
	if err == nil {
		return true
	}
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM
}

// tail returns the last lines of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 600 {
		s = "..." + s[len(s)-600:]
	}
	return s
}

// freePort returns a loopback address whose port nothing uses now, over
// TCP or UDP: a proxy listens on both.
func freePort() (string, error) {
	var err error
	for range 20 {
		var addr string
		if addr, err = freeTCPAndUDP(); err == nil {
			return addr, nil
		}
	}
	return "", fmt.Errorf("finding a free port: %w", err)
}

// freeTCPAndUDP picks a free TCP port and checks that its UDP twin is
// free too.
func freeTCPAndUDP() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	addr := ln.Addr().String()
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return "", err
	}
	pc.Close()
	return addr, nil
}

// errNoSluice says the checkout has no cmd/sluice to build yet.
var errNoSluice = errors.New("bench: no cmd/sluice in this checkout")

// buildSluice builds cmd/sluice of the module at root into dir.
func buildSluice(root, dir string) (string, error) {
	if _, err := os.Stat(filepath.Join(root, "cmd", "sluice")); err != nil {
		return "", errNoSluice
	}
	bin := filepath.Join(dir, "sluice")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/sluice")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building sluice: %w: %s", err, out)
	}
	return bin, nil
}
