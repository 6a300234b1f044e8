package main

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"sluice/l4"
)

// A new process that stops reading the connections sent to it does not
// block the old one for good: sendHandoffs fails at its deadline, and
// counts what it sent, so that takeBack returns the rest to their proxy.
func TestSendHandoffsEndsAtDeadline(t *testing.T) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(pair[1]) }) // the peer that never reads
	f := os.NewFile(uintptr(pair[0]), "control")
	fc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	ctl := fc.(*net.UnixConn)
	t.Cleanup(func() { ctl.Close() })
	// Any descriptors do to ride along; these two travel with each frame.
	null, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(null) })
	// 64 connections with 256 KiB pending each: far more than the
	// socket's buffer holds.
	hs := make([]l4.Handoff, 64)
	for i := range hs {
		hs[i] = l4.Handoff{ClientFD: null, BackendFD: null}
		hs[i].Dirs[1].Pending = make([]byte, 256<<10)
	}
	ex := []exported{{s: &l4.Server{Name: "t"}, hs: hs}}
	done := make(chan error, 1)
	go func() {
		_, _, err := sendHandoffs(ctl, ex, func() []exportedUDP { return nil }, time.Now().Add(200*time.Millisecond))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("sendHandoffs to a peer that does not read: %v, want a deadline error", err)
		}
	case <-time.After(10 * time.Second):
		ctl.Close() // ends the blocked write, and the goroutine
		<-done
		t.Fatal("sendHandoffs to a peer that does not read was still blocked after 10s")
	}
	if sent := ex[0].sent; sent >= len(hs) {
		t.Errorf("%d of %d counted as sent to a peer that read none", sent, len(hs))
	}
}
