package main

import (
	"testing"
	"time"
)

// TestUDPFullRateDirect runs the UDP load against the UDP echo backend
// alone: the harness must count echoes and loss, and stop cleanly.
func TestUDPFullRateDirect(t *testing.T) {
	echo, err := startUDPEcho("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	tg := target{addr: echo.c.LocalAddr().String()}
	m, err := udpFullRate(t.Context(), tg, runOpts{warm: 100 * time.Millisecond, dur: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if m["dps"] <= 0 || m["loss"] < 0 || m["loss"] > 100 {
		t.Fatalf("results %v: want echoes per second > 0 and loss within 0..100%%", m)
	}
	t.Logf("direct: %.0f datagrams/s, %.1f%% lost", m["dps"], m["loss"])
}
