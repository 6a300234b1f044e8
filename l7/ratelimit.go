package l7

import (
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"sluice/internal/access"
)

// rateLimit caps each client's requests, on a listener or a route. Its
// memory is bounded by the limiter's client table (access.Limits.Clients).
type rateLimit struct {
	lim   *access.Limiter
	retry string // Retry-After of a 429, in whole seconds
}

// newRateLimit returns nil for the zero rate.
func newRateLimit(r access.Rate, burst int) *rateLimit {
	lim := access.NewLimiter(access.Limits{Rate: r, Burst: burst})
	if lim == nil {
		return nil
	}
	secs := max(1, (lim.RetryAfter()+time.Second-1)/time.Second)
	return &rateLimit{lim: lim, retry: strconv.Itoa(int(secs))}
}

// refuse answers 429 and returns true if client is over l's rate. The
// Retry-After is the most a client refused now waits for its next
// allowance (RFC 6585 section 4).
func (s *Server) refuse(l *rateLimit, rec *recorder, client netip.Addr) bool {
	if l == nil || l.lim.Allow(client) == nil {
		return false
	}
	rec.Header().Set("Retry-After", l.retry)
	s.local(rec, http.StatusTooManyRequests, EndRateLimited)
	return true
}
