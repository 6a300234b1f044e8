package main

import (
	"bufio"
	_ "embed"
	"flag"
	"fmt"
	"io"
	"net"
	"sync"

	"sluice/config"
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
	cfg, err := config.Parse("demo.toml (built in)", demoConfig)
	if err != nil {
		return fmt.Errorf("built-in demo configuration: %w", err)
	}
	backends, err := startDemoBackends(cfg)
	if err != nil {
		return err
	}
	defer backends.close()
	ready := func() {
		fmt.Fprintf(stdout, "sluice demo: balancing %s across %d demo backends.\n",
			cfg.Listeners[0].Bind, len(cfg.Pools[0].Backends))
		fmt.Fprintf(stdout, "Try it: nc %s %d   (each connection is greeted by the backend it reached)\n",
			cfg.Listeners[0].Bind.Addr(), cfg.Listeners[0].Bind.Port())
		fmt.Fprintln(stdout, "Press Ctrl-C to stop.")
	}
	return serve(cfg, newLogger(cfg.Log, stderr), ready)
}

// demoBackends are the echo servers behind the demo's pool.
type demoBackends struct {
	lns []net.Listener
	wg  sync.WaitGroup
	mu  sync.Mutex
	cs  map[net.Conn]struct{}
}

func startDemoBackends(cfg *config.Config) (*demoBackends, error) {
	d := &demoBackends{cs: make(map[net.Conn]struct{})}
	for i, b := range cfg.Pools[0].Backends {
		ln, err := net.Listen("tcp", b.Address.String())
		if err != nil {
			d.close()
			return nil, fmt.Errorf("starting demo backend %s: %w", b.Address, err)
		}
		d.lns = append(d.lns, ln)
		name := fmt.Sprintf("demo backend %d (%s)", i+1, b.Address)
		d.wg.Go(func() { d.accept(ln, name) })
	}
	return d, nil
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
	d.mu.Lock()
	for c := range d.cs {
		c.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
}
