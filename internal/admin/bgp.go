package admin

import (
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"sluice/internal/bgp"
)

// BGP is the host's BGP speaker as the admin interface sees and steers
// it. *bgp.Speaker implements it.
type BGP interface {
	// Status returns the sessions and what is announced.
	Status() bgp.Status
	// SetDrained withdraws every prefix (true) or lets them be announced
	// again (false).
	SetDrained(drained bool)
}

var _ BGP = (*bgp.Speaker)(nil)

var errNoBGP = errors.New("admin: this sluice has no [bgp] table")

// bgpStatus answers GET /api/v1/bgp.
func (s *Server) bgpStatus(w http.ResponseWriter, r *http.Request) {
	if s.o.BGP == nil {
		writeError(w, http.StatusNotFound, errNoBGP)
		return
	}
	writeJSON(w, http.StatusOK, s.o.BGP.Status())
}

// hostDrain answers POST /api/v1/host/drain and /api/v1/host/enable: the
// whole host's virtual addresses are withdrawn (its established
// connections go on), or announced again where their listeners can serve.
func (s *Server) hostDrain(drained bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.o.BGP == nil {
			writeError(w, http.StatusNotFound, errNoBGP)
			return
		}
		s.o.BGP.SetDrained(drained)
		writeJSON(w, http.StatusOK, s.o.BGP.Status())
	}
}

var (
	descBGPUp = prometheus.NewDesc("sluice_bgp_session_up",
		"1 while the BGP session with the peer is established.", []string{"peer"}, nil)
	descBGPEstablished = prometheus.NewDesc("sluice_bgp_session_established_total",
		"Times the BGP session with the peer came up.", []string{"peer"}, nil)
	descBGPAnnounced = prometheus.NewDesc("sluice_bgp_announced",
		"1 while the prefix is announced to the peers.", []string{"prefix"}, nil)
	descBGPDrained = prometheus.NewDesc("sluice_bgp_drained",
		"1 while the admin has drained the host (every prefix withdrawn).", nil, nil)
)

// bgpCollector reads the speaker's status at scrape time.
type bgpCollector struct{ b BGP }

// Describe sends nothing: the collector is unchecked, like the state's.
func (bgpCollector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (c bgpCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.b.Status()
	for _, p := range st.Peers {
		up := 0.0
		if p.State == "established" {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descBGPUp, prometheus.GaugeValue, up, p.Addr.String())
		ch <- prometheus.MustNewConstMetric(descBGPEstablished, prometheus.CounterValue, float64(p.Established), p.Addr.String())
	}
	for _, r := range st.Routes {
		ch <- prometheus.MustNewConstMetric(descBGPAnnounced, prometheus.GaugeValue, b2f(r.Announced), r.Prefix.String())
	}
	ch <- prometheus.MustNewConstMetric(descBGPDrained, prometheus.GaugeValue, b2f(st.Drained))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// setBGP registers the BGP collector once: the speaker outlives reloads,
// as the Metrics do.
func (m *Metrics) setBGP(b BGP) {
	m.stateMu.Lock()
	defer m.stateMu.Unlock()
	if !m.bgpOn {
		m.bgpOn = true
		m.reg.MustRegister(bgpCollector{b})
	}
}
