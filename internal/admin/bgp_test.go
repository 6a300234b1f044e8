package admin

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"sluice/internal/bgp"
)

// fakeBGP is a speaker with one session and one prefix.
type fakeBGP struct {
	mu      sync.Mutex
	drained bool
}

func (f *fakeBGP) Status() bgp.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bgp.Status{Drained: f.drained,
		Peers:  []bgp.PeerStatus{{Addr: netip.MustParseAddr("10.0.0.254"), AS: 65000, State: "established", Established: 2}},
		Routes: []bgp.RouteStatus{{Prefix: netip.MustParsePrefix("192.0.2.10/32"), Listeners: []string{"web"}, Announced: !f.drained}}}
}

func (f *fakeBGP) SetDrained(d bool) {
	f.mu.Lock()
	f.drained = d
	f.mu.Unlock()
}

func TestBGPAPIAndMetrics(t *testing.T) {
	f := &fakeBGP{}
	m := NewMetrics(PoolNames{}, "test")
	o := Options{Metrics: m, BGP: f, Logger: slog.New(slog.DiscardHandler)}
	New(o) // a second Server on the same Metrics (a reload) registers nothing twice
	hs := httptest.NewServer(New(o).Handler())
	defer hs.Close()

	code, body := get(t, hs.URL+"/api/v1/bgp")
	var st bgp.Status
	if code != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil || st.Peers[0].State != "established" || !st.Routes[0].Announced {
		t.Fatalf("GET /api/v1/bgp: %d %s", code, body)
	}
	_, metrics := get(t, hs.URL+"/metrics")
	for _, want := range []string{`sluice_bgp_session_up{peer="10.0.0.254"} 1`, `sluice_bgp_session_established_total{peer="10.0.0.254"} 2`,
		`sluice_bgp_announced{prefix="192.0.2.10/32"} 1`, "sluice_bgp_drained 0"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	post := func(path string) bgp.Status {
		t.Helper()
		resp, err := http.Post(hs.URL+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st bgp.Status
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
			t.Fatalf("POST %s: %d", path, resp.StatusCode)
		}
		return st
	}
	if st := post("/api/v1/host/drain"); !st.Drained || st.Routes[0].Announced {
		t.Errorf("after drain: %+v", st)
	}
	if _, metrics := get(t, hs.URL+"/metrics"); !strings.Contains(metrics, "sluice_bgp_drained 1") {
		t.Error("sluice_bgp_drained is not 1 while drained")
	}
	if st := post("/api/v1/host/enable"); st.Drained || !st.Routes[0].Announced {
		t.Errorf("after enable: %+v", st)
	}
}

func TestNoBGP(t *testing.T) {
	hs, _, _ := testServer(t, "", 0)
	if code, _ := get(t, hs.URL+"/api/v1/bgp"); code != http.StatusNotFound {
		t.Errorf("GET /api/v1/bgp without [bgp]: %d, want 404", code)
	}
	resp, err := http.Post(hs.URL+"/api/v1/host/drain", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST /api/v1/host/drain without [bgp]: %d, want 404", resp.StatusCode)
	}
	_, metrics := get(t, hs.URL+"/metrics")
	if strings.Contains(metrics, "sluice_bgp_") {
		t.Error("bgp metrics without [bgp]")
	}
}
