package dbtest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"sluice/internal/dbproc"
)

// Nginx is a running nginx serving HTTP/1.1 as a backend.
type Nginx struct {
	Addr netip.AddrPort
	srv  *dbproc.Process
}

// nginxConf answers every request with nginx's name and what the proxy
// sent it, so tests can check forwarding headers at a real server.
const nginxConf = `daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log notice;
events { worker_connections 512; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	keepalive_requests 100000;
	server {
		listen 127.0.0.1:%[2]d;
		location / {
			default_type text/plain;
			return 200 "nginx $request_method $request_uri host=$http_host xff=$http_x_forwarded_for id=$http_x_request_id\n";
		}
	}
}
`

// StartNginx starts nginx (one process, no daemon) on a free loopback port
// and stops it when t ends.
func StartNginx(t testing.TB) *Nginx {
	t.Helper()
	bin, err := lookBin("nginx", "/usr/sbin")
	if err != nil {
		t.Fatal(err)
	}
	dir := tempDir(t, "nginx", false)
	n := &Nginx{}
	err = dbproc.WithFreePort(func(port uint16) error {
		conf := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, dir, port), 0o644); err != nil {
			return err
		}
		// -e: nginx opens its default error log before reading the
		// configuration, which fails where /var/log/nginx is not ours.
		srv, err := dbproc.Start("nginx", dbproc.Options{Dir: dir, StopSignal: syscall.SIGQUIT},
			bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
		if err != nil {
			return err
		}
		cleanup(t, srv)
		n.Addr, n.srv = loopback(port), srv
		return srv.WaitReady(context.Background(), func(ctx context.Context) error {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", n.Addr.String())
			if err == nil {
				c.Close()
			}
			return err
		})
	})
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	return n
}
