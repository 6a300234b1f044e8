package main

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"

	"sluice/config"
	"sluice/l7/route"
)

// demoWeb is the web servers behind the demo's HTTP listener.
type demoWeb struct {
	srvs []*http.Server
	wg   sync.WaitGroup
}

// startDemoWeb starts a web server on each backend address of the pools
// listener l forwards to, each answering with its name and the request.
func startDemoWeb(cfg *config.Config, l config.Listener) (*demoWeb, error) {
	var addrs []netip.AddrPort
	names := []string{l.Pool}
	for _, r := range l.HTTP.Routes {
		if r.Kind == route.Forward {
			names = append(names, r.Pool)
		}
	}
	for _, name := range names {
		for _, b := range cfg.Pool(name).Backends {
			if !slices.Contains(addrs, b.Address) {
				addrs = append(addrs, b.Address)
			}
		}
	}
	slices.SortFunc(addrs, netip.AddrPort.Compare)
	d := &demoWeb{}
	for i, a := range addrs {
		ln, err := net.Listen("tcp", a.String())
		if err != nil {
			d.close()
			return nil, fmt.Errorf("starting demo web backend %s: %w", a, err)
		}
		name := fmt.Sprintf("demo web backend %d (%s)", i+1, a)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from %s: %s %s, forwarded for %s, request id %s\n",
				name, r.Method, r.URL.RequestURI(), r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Request-Id"))
		})}
		d.srvs = append(d.srvs, srv)
		// Serve returns when close closes the server.
		d.wg.Go(func() { srv.Serve(ln) })
	}
	return d, nil
}

func (d *demoWeb) close() {
	for _, s := range d.srvs {
		s.Close()
	}
	d.wg.Wait()
}
