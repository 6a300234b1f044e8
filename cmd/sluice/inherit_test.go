package main

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sluice/config"
)

// An inherited socket of the wrong kind under a listener's key is refused
// with an error that says what it is (not "<nil>"), and closed.
func TestInheritedSocketOfWrongKind(t *testing.T) {
	unixFile := func(t *testing.T) *os.File {
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(t.TempDir(), "s"), Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		f, err := ln.File()
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	tcpFile := func(t *testing.T) *os.File {
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		f, err := ln.File()
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	for _, tc := range []struct {
		name  string
		proto config.Protocol
		file  func(*testing.T) *os.File
		want  string
	}{
		{"unix socket for tcp", config.TCP, unixFile, "*net.UnixListener, not a TCP listener"},
		{"tcp socket for udp", config.UDP, tcpFile, "socket 0 of 127.0.0.1:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lc := config.Listener{Name: "l", Protocol: tc.proto, Bind: netip.MustParseAddrPort("127.0.0.1:1"), Sockets: 1}
			in := &inherited{files: map[string]*os.File{socketKey(lc, 0): tc.file(t)}}
			var err error
			if tc.proto == config.TCP {
				_, err = in.listenTCP(lc)
			} else {
				_, _, err = in.listenUDP(lc)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "<nil>") {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}
