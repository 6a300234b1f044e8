package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"sluice/config"
	"sluice/internal/listen"
	"sluice/internal/pool"
	"sluice/l4"
	"sluice/l4/udp"
)

// upgradeEnv names, in the environment of a process started by an
// upgrade, what its file descriptors 3, 4, ... are: a JSON list of keys,
// the control socket's first (ctlKey), then each listening socket's
// (socketKey) and the admin socket's (adminKey).
const upgradeEnv = "SLUICE_UPGRADE_FDS"

const (
	ctlKey   = "control"
	adminKey = "admin"
)

// socketKey names socket i of a listener: a socket is taken over only by
// a listener of the same name, protocol and bind, like a reload's.
func socketKey(lc config.Listener, i int) string {
	return lc.Name + " " + lc.Protocol.String() + " " + lc.Bind.String() + " " + strconv.Itoa(i)
}

// inherited is what the old process of an upgrade passed on: the control
// socket to it and the listening sockets by key. A nil *inherited (a
// process not started by an upgrade) has nothing.
type inherited struct {
	ctl   *net.UnixConn
	files map[string]*os.File // not yet taken
}

// inheritFromEnv takes the descriptors upgradeEnv names, and removes the
// variable, so that a later upgrade of this process starts afresh.
func inheritFromEnv() (*inherited, error) {
	v, ok := os.LookupEnv(upgradeEnv)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(upgradeEnv)
	var keys []string
	if err := json.Unmarshal([]byte(v), &keys); err != nil || len(keys) == 0 || keys[0] != ctlKey {
		return nil, fmt.Errorf("upgrade: %s=%q is not a list of inherited sockets", upgradeEnv, v)
	}
	in := &inherited{files: map[string]*os.File{}}
	for i, k := range keys {
		fd := 3 + i
		unix.CloseOnExec(fd)
		f := os.NewFile(uintptr(fd), k)
		if k != ctlKey {
			in.files[k] = f
			continue
		}
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("upgrade: the control socket: %w", err)
		}
		uc, ok := c.(*net.UnixConn)
		if !ok {
			c.Close()
			return nil, fmt.Errorf("upgrade: the control socket is a %T", c)
		}
		in.ctl = uc
	}
	return in, nil
}

// take returns the inherited socket of key, if there is one, and forgets
// it.
func (in *inherited) take(key string) *os.File {
	if in == nil {
		return nil
	}
	f := in.files[key]
	delete(in.files, key)
	return f
}

// listenTCP returns lc's sockets: those inherited, in order, and new
// ones next to them for the rest.
func (in *inherited) listenTCP(lc config.Listener) ([]*net.TCPListener, error) {
	var lns []*net.TCPListener
	bind := lc.Bind
	for i := range max(lc.Sockets, 1) {
		f := in.take(socketKey(lc, i))
		if f == nil {
			break
		}
		ln, err := net.FileListener(f)
		f.Close()
		tl, ok := ln.(*net.TCPListener)
		if err == nil && !ok {
			ln.Close()
			err = fmt.Errorf("a %T, not a TCP listener", ln)
		}
		if err != nil {
			closeAll(lns)
			return nil, fmt.Errorf("taking over socket %d of %s: %w", i, lc.Bind, err)
		}
		lns = append(lns, tl)
		bind = tl.Addr().(*net.TCPAddr).AddrPort()
	}
	if rest := max(lc.Sockets, 1) - len(lns); rest > 0 {
		more, err := listen.TCP(context.Background(), bind, rest)
		if err != nil {
			closeAll(lns)
			return nil, err
		}
		lns = append(lns, more...)
	}
	return lns, nil
}

// listenUDP is listenTCP for a UDP listener; inherited says whether it
// took over the old process's sockets (with their sessions to come).
func (in *inherited) listenUDP(lc config.Listener) (conns []*net.UDPConn, inherited bool, err error) {
	bind := lc.Bind
	for i := range max(lc.Sockets, 1) {
		f := in.take(socketKey(lc, i))
		if f == nil {
			break
		}
		pc, err := net.FilePacketConn(f)
		f.Close()
		uc, ok := pc.(*net.UDPConn)
		if err == nil && !ok {
			pc.Close()
			err = fmt.Errorf("a %T, not a UDP socket", pc)
		}
		if err != nil {
			closeAll(conns)
			return nil, false, fmt.Errorf("taking over socket %d of %s: %w", i, lc.Bind, err)
		}
		conns = append(conns, uc)
		bind = uc.LocalAddr().(*net.UDPAddr).AddrPort()
	}
	inherited = len(conns) > 0
	if rest := max(lc.Sockets, 1) - len(conns); rest > 0 {
		more, err := listen.UDP(context.Background(), bind, rest)
		if err != nil {
			closeAll(conns)
			return nil, false, err
		}
		conns = append(conns, more...)
	}
	return conns, inherited, nil
}

// adminListener returns the inherited admin socket, if its address is
// c's; nil otherwise.
func (in *inherited) adminListener(c *config.Admin) (net.Listener, error) {
	f := in.take(adminKey)
	if f == nil {
		return nil, nil
	}
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("admin: taking over its socket: %w", err)
	}
	if ln.Addr().Network() != c.Network() || !sameAdminAddr(ln.Addr(), c) {
		ln.Close()
		return nil, nil
	}
	if ul, ok := ln.(*net.UnixListener); ok {
		// The old process leaves the socket file to this one.
		ul.SetUnlinkOnClose(true)
	}
	return ln, nil
}

func sameAdminAddr(a net.Addr, c *config.Admin) bool {
	if c.Network() == "unix" {
		return a.String() == c.Address()
	}
	got, err1 := netip.ParseAddrPort(a.String())
	want, err2 := netip.ParseAddrPort(c.Address())
	return err1 == nil && err2 == nil && got == want
}

// closeUnused closes the inherited sockets no listener took: the old
// process's listeners that the new configuration does not have.
func (in *inherited) closeUnused() {
	if in == nil {
		return
	}
	for k, f := range in.files {
		f.Close()
		delete(in.files, k)
	}
}

// takeOver is the new process's side, once it serves: it says so to the
// old process, then adopts the connections the old one sends. Errors are
// logged; the process serves on either way.
func (d *daemon) takeOver(inh *inherited) {
	defer inh.ctl.Close()
	servers := map[string]*live{}
	r := readyMsg{PID: os.Getpid()}
	d.mu.Lock()
	for _, l := range d.in.lns {
		if _, ok := l.srv.(*l4.Server); ok && l.proto == config.TCP {
			servers[l.name] = l
			r.TCP = append(r.TCP, l.name)
		}
	}
	held := d.heldUDP()
	for name := range held {
		r.UDP = append(r.UDP, name)
	}
	backend := backendFinder(d.pools)
	d.mu.Unlock()
	// Its UDP sockets are read once the sessions are adopted, or
	// whatever came of the hand-over (see handover_udp.go).
	resume := func() {
		for _, l := range held {
			l.srv.(*udp.Server).Resume()
		}
	}
	defer resume()
	if err := writeFrame(inh.ctl, r); err != nil {
		d.base.Error("upgrade: telling the old process", slog.String("error", err.Error()))
		return
	}
	inh.ctl.SetReadDeadline(time.Now().Add(adoptTimeout))
	byListener := map[string][]l4.Handoff{}
	udpBy := map[string][]udp.Handoff{}
	var ack adoptedMsg
	for {
		var m handoffMsg
		fds, err := readFrame(inh.ctl, &m)
		if errors.Is(err, errEnd) {
			break
		}
		if err != nil {
			// The stream is broken: what came is adopted.
			closeFDs(fds)
			ack.Errors = append(ack.Errors, err.Error())
			break
		}
		if len(m.UDP) > 0 {
			if len(fds) != len(m.UDP) || held[m.Listener] == nil {
				closeFDs(fds)
				ack.Errors = append(ack.Errors, fmt.Sprintf("%d udp sessions of listener %q with %d sockets",
					len(m.UDP), m.Listener, len(fds)))
				continue
			}
			for i := range m.UDP {
				m.UDP[i].FD = fds[i]
			}
			udpBy[m.Listener] = append(udpBy[m.Listener], m.UDP...)
			continue
		}
		if len(fds) != 2 || servers[m.Listener] == nil {
			closeFDs(fds)
			ack.Errors = append(ack.Errors, fmt.Sprintf("a connection of listener %q with %d sockets", m.Listener, len(fds)))
			continue
		}
		m.ClientFD, m.BackendFD = fds[0], fds[1]
		byListener[m.Listener] = append(byListener[m.Listener], m.Handoff)
	}
	ctx, cancel := context.WithTimeout(context.Background(), adoptTimeout)
	defer cancel()
	// UDP first: datagrams wait in the sockets' queues until they are
	// read again.
	n, errs := adoptUDP(ctx, held, udpBy, backend)
	ack.UDP, ack.Errors = n, append(ack.Errors, errs...)
	resume()
	for name, hs := range byListener {
		l := servers[name]
		n, err := l.srv.(*l4.Server).Import(ctx, hs, backend(l.pool))
		ack.Adopted += n
		if err != nil {
			ack.Errors = append(ack.Errors, err.Error())
		}
	}
	if err := writeFrame(inh.ctl, ack); err != nil {
		d.base.Warn("upgrade: answering the old process", slog.String("error", err.Error()))
	}
	d.base.Info("upgrade: took over", slog.Int("connections", ack.Adopted), slog.Int("udp_sessions", ack.UDP),
		slog.Int("errors", len(ack.Errors)))
}

// backendFinder returns, for a listener's pool, a lookup of backends by
// address: in that pool first (where the connection's pick came from),
// then in the others (an SNI route's).
func backendFinder(pools map[string]*pool.Pool) func(*pool.Pool) func(netip.AddrPort) *pool.Backend {
	byAddr := map[netip.AddrPort]*pool.Backend{}
	for _, p := range pools {
		for _, b := range p.Backends() {
			byAddr[b.Addr] = b
		}
	}
	return func(p *pool.Pool) func(netip.AddrPort) *pool.Backend {
		return func(a netip.AddrPort) *pool.Backend {
			if p != nil {
				for _, b := range p.Backends() {
					if b.Addr == a {
						return b
					}
				}
			}
			return byAddr[a]
		}
	}
}
