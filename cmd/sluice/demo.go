package main

import (
	"bufio"
	"bytes"
	_ "embed"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"sluice/config"
	"sluice/internal/certs/mint"
)

//go:embed demo.toml
var demoConfig []byte

func demoCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	printConfig := fs.Bool("print", false, "print the demo's configuration and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *printConfig {
		_, err := stdout.Write(demoConfig)
		return err
	}
	certDir, caFile, err := demoCertificates()
	if err != nil {
		return err
	}
	defer os.RemoveAll(certDir)
	cfg, err := config.Parse("demo.toml (built in)", bytes.ReplaceAll(demoConfig, []byte("@CERTS@"), []byte(certDir)))
	if err != nil {
		return fmt.Errorf("built-in demo configuration: %w", err)
	}
	tcp, udp := demoListener(cfg, config.TCP), demoListener(cfg, config.UDP)
	backends, err := startDemoBackends(cfg.Pool(tcp.Pool).Backends, cfg.Pool(udp.Pool).Backends)
	if err != nil {
		return err
	}
	defer backends.close()
	web := demoListener(cfg, config.HTTP)
	webBackends, err := startDemoWeb(cfg, web)
	if err != nil {
		return err
	}
	defer webBackends.close()
	ready := func() {
		fmt.Fprintf(stdout, "sluice demo: balancing TCP on %s and UDP on %s across %d demo backends.\n",
			tcp.Bind, udp.Bind, len(cfg.Pool(tcp.Pool).Backends))
		fmt.Fprintf(stdout, "Try it: nc %s %d      (each connection is greeted by the backend it reached)\n",
			tcp.Bind.Addr(), tcp.Bind.Port())
		fmt.Fprintf(stdout, "        nc -u %s %d   (each line is a datagram; the backend of your flow answers with its name)\n",
			udp.Bind.Addr(), udp.Bind.Port())
		fmt.Fprintf(stdout, "        curl http://%s/api/x   (HTTP, routed by path; also /healthz, /old and any other path)\n", web.Bind)
		fmt.Fprintf(stdout, "        curl --cacert %s https://localhost:7443/api/x   (the same over HTTPS, HTTP/2 by ALPN)\n", caFile)
		if cfg.Admin != nil {
			fmt.Fprintf(stdout, "Watch it: http://%s/ (status page), http://%s/metrics; sluice ctl -a %s pools\n",
				cfg.Admin.Address(), cfg.Admin.Address(), cfg.Admin.Address())
		}
		fmt.Fprintln(stdout, "Press Ctrl-C to stop.")
	}
	return serve(cfg, newLogger(cfg.Log, stderr), ready, nil)
}

// demoCertificates makes a throwaway CA and a certificate for localhost
// and 127.0.0.1 in a new temporary directory, which the caller removes.
func demoCertificates() (dir, caFile string, err error) {
	dir, err = os.MkdirTemp("", "sluice-demo-")
	if err != nil {
		return "", "", err
	}
	ca, err := mint.NewCA("sluice demo CA")
	if err == nil {
		_, err = ca.Issue(dir, "demo", mint.ECDSA, "localhost", "127.0.0.1")
	}
	if err == nil {
		caFile, err = ca.Write(dir)
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", "", fmt.Errorf("making the demo's certificate: %w", err)
	}
	return dir, caFile, nil
}

// demoListener returns the demo's listener of protocol p.
func demoListener(cfg *config.Config, p config.Protocol) config.Listener {
	for _, l := range cfg.Listeners {
		if l.Protocol == p {
			return l
		}
	}
	panic("demo.toml has no " + p.String() + " listener")
}

// demoBackends are the echo servers behind the demo's pools.
type demoBackends struct {
	lns   []net.Listener
	conns []*net.UDPConn
	wg    sync.WaitGroup
	mu    sync.Mutex
	cs    map[net.Conn]struct{}
}

// startDemoBackends starts a TCP backend on each address of tcp and a UDP
// backend on each of udp.
func startDemoBackends(tcp, udp []config.Backend) (*demoBackends, error) {
	d := &demoBackends{cs: make(map[net.Conn]struct{})}
	for i, b := range tcp {
		ln, err := net.Listen("tcp", b.Address.String())
		if err != nil {
			d.close()
			return nil, fmt.Errorf("starting demo backend %s: %w", b.Address, err)
		}
		d.lns = append(d.lns, ln)
		name := fmt.Sprintf("demo backend %d (%s)", i+1, b.Address)
		d.wg.Go(func() { d.accept(ln, name) })
	}
	for i, b := range udp {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(b.Address))
		if err != nil {
			d.close()
			return nil, fmt.Errorf("starting demo backend udp %s: %w", b.Address, err)
		}
		d.conns = append(d.conns, c)
		name := fmt.Sprintf("demo backend %d (udp %s)", i+1, b.Address)
		d.wg.Go(func() { answer(c, name) })
	}
	return d, nil
}

// answer replies to each datagram on c with name, a colon and the
// datagram, until c is closed.
func answer(c *net.UDPConn, name string) {
	buf := make([]byte, 1<<16)
	prefix := copy(buf, name+": ")
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf[prefix:])
		if err != nil {
			return
		}
		c.WriteToUDPAddrPort(buf[:prefix+n], from)
	}
}

func (d *demoBackends) accept(ln net.Listener, name string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		d.mu.Lock()
		d.cs[c] = struct{}{}
		d.mu.Unlock()
		d.wg.Go(func() {
			defer func() {
				d.mu.Lock()
				delete(d.cs, c)
				d.mu.Unlock()
				c.Close()
			}()
			echo(c, name)
		})
	}
}

// echo greets c with name, then echoes it line by line.
func echo(c net.Conn, name string) {
	fmt.Fprintf(c, "hello from %s\n", name)
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			if _, werr := c.Write(line); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (d *demoBackends) close() {
	for _, ln := range d.lns {
		ln.Close()
	}
	for _, c := range d.conns {
		c.Close()
	}
	d.mu.Lock()
	for c := range d.cs {
		c.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
}
