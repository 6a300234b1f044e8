package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"sluice/internal/admin"
)

// TestExplainAgreesWithConnections connects 1,000 clients, each from its
// own loopback address, and checks that the backend each one reached is
// the one the API's explain named for it, on every balance algorithm
// where the answer is determined (Maglev on the IP and on IP and port;
// round robin for the next connection); that sluice explain, offline,
// and sluice ctl explain print the same; and that a backend drained
// through the API is excluded from both the answers and the connections.
func TestExplainAgreesWithConnections(t *testing.T) {
	for _, tc := range []struct {
		name, pool string
		offline    bool // the answer depends on the client alone
	}{
		{"maglev client_ip", "balance = \"maglev\"\nhash_key = \"client_ip\"", true},
		{"maglev client_ip_port", "balance = \"maglev\"\nhash_key = \"client_ip_port\"\ntable_size = 1009", true},
		{"round_robin", "balance = \"round_robin\"", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs := []*killable{startKillable(t, "a"), startKillable(t, "b"), startKillable(t, "c")}
			byName := map[string]string{"a": bs[0].addr, "b": bs[1].addr, "c": bs[2].addr}
			addr, adminAddr := freePort(t), freePort(t)
			file := writeFile(t, fmt.Sprintf(`drain_timeout = "100ms"
[admin]
bind = %q
token = "tok"
[listeners.t]
bind = %q
pool = "p"
[pools.p]
%s
[[pools.p.backends]]
address = %q
[[pools.p.backends]]
address = %q
weight = 2
[[pools.p.backends]]
address = %q
weight = 3
`, adminAddr, addr, tc.pool, bs[0].addr, bs[1].addr, bs[2].addr))
			p := startSluice(t, nil, "-c", file)
			p.waitOutput(t, "admin listening")
			api := adminClient{t: t, base: "http://" + adminAddr, token: "tok"}
			agree(t, api, addr, byName, 0, 1000)

			// Offline and through ctl, the same text, for a sample.
			for i := range 20 {
				if !tc.offline {
					break // the running sluice is further along the sequence
				}
				client := fmt.Sprintf("10.%d.%d.7:%d", i, i*7, 1000+i)
				offline, code := runSluice(t, "explain", "-c", file, "--pool", "p", "--client", client)
				online, code2 := runSluice(t, "ctl", "-c", file, "explain", "p", client)
				if code != 0 || code2 != 0 || offline != online {
					t.Fatalf("client %s: offline (exit %d):\n%s\nctl (exit %d):\n%s", client, code, offline, code2, online)
				}
			}

			// Drained through the API: excluded from both.
			code, body := api.do(http.MethodPut, "/api/v1/pools/p/backends/"+bs[2].addr+"/state", `{"state":"drain"}`,
				"Content-Type", "application/json")
			if code != http.StatusOK {
				t.Fatalf("drain: %d %s", code, body)
			}
			if got := agree(t, api, addr, byName, 1000, 200); got[bs[2].addr] > 0 {
				t.Fatalf("%d clients reached the drained backend", got[bs[2].addr])
			}
		})
	}
}

// agree connects n clients, numbered from first, each from its own
// loopback address, asking explain before each connection, and fails t
// when a client reaches another backend than explained. It returns how
// many clients reached each backend.
func agree(t *testing.T, api adminClient, addr string, byName map[string]string, first, n int) map[string]int {
	t.Helper()
	reached := map[string]int{}
	// Each run takes its clients from its own 127.N.0.0/16, so that runs
	// at the same time (other packages' tests, a second checkout) do not
	// bind the same address and port.
	net16 := byte(1 + rand.IntN(250))
	for i := first; i < first+n; i++ {
		// Explain is asked first: for round robin, the answer is the
		// next connection's.
		src := &net.TCPAddr{IP: net.IPv4(127, net16, byte(i/250), byte(2+i%250)), Port: 20000 + i}
		client := src.String()
		var e admin.ExplainJSON
		api.get("/api/v1/pools/p/explain?client="+client, &e)
		d := net.Dialer{LocalAddr: src, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		// A reset leaves no TIME_WAIT behind, so the same address and
		// port can be bound again by the next run.
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
		if err != nil {
			t.Fatalf("client %s: %v", client, err)
		}
		got := byName[strings.TrimSpace(line)]
		reached[got]++
		if e.Backend != got {
			t.Fatalf("client %d (%s): explained %s, reached %s (%s)", i, client, e.Backend, got, e.Why)
		}
	}
	return reached
}
