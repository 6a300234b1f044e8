package cache

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// object is one stored response. It is never changed once stored: a 304
// that updates it stores a new one.
type object struct {
	status int
	header http.Header // as the backend sent it, less hop-by-hop fields and Age
	body   []byte
	size   int64 // weight in the store

	responseTime time.Time     // when its response head arrived
	initialAge   time.Duration // corrected_initial_age (RFC 9111 section 4.2.3)
	lifetime     time.Duration // freshness lifetime (section 4.2.1)
	cc           control
	swr, sie     time.Duration // RFC 5861 windows, stated or the defaults

	varyNames []string
	varyStar  bool
	secondary string
	etag      string
	lastMod   string
}

// age is the object's current_age at now (RFC 9111 section 4.2.3).
func (o *object) age(now time.Time) time.Duration {
	return o.initialAge + max(now.Sub(o.responseTime), 0)
}

// mustRevalidate says whether the object may never be served stale: a
// shared cache treats must-revalidate, proxy-revalidate and s-maxage alike
// (RFC 9111 sections 5.2.2.2, 5.2.2.8 and 5.2.2.10).
func (o *object) mustRevalidate() bool {
	return o.cc.mustRevalidate || o.cc.proxyRevalidate || o.cc.sMaxAge != absent
}

// hopFields are the hop-by-hop fields, which a cache must not store (RFC
// 9111 section 3.1).
var hopFields = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authentication-Info", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// storedHeader returns the fields of h that are stored: without
// hop-by-hop fields, those Connection names, and Age (recomputed on every
// hit).
func storedHeader(h http.Header) http.Header {
	out := h.Clone()
	for _, line := range h["Connection"] {
		for _, name := range splitList(line) {
			out.Del(name)
		}
	}
	for _, f := range hopFields {
		delete(out, f)
	}
	delete(out, "Age")
	return out
}

// headerSize is roughly what a header costs in memory: the map (its
// groups and slots, measured with heap profiles at about 300 bytes for a
// few fields), and each field's key, slice and strings.
func headerSize(h http.Header) int64 {
	n := int64(256)
	for k, vs := range h {
		n += int64(len(k)) + 64
		for _, v := range vs {
			n += int64(len(v)) + 16
		}
	}
	return n
}

// heuristicStatuses are the statuses a cache may give a freshness to when
// the response states none (RFC 9110 section 15.1).
var heuristicStatuses = []int{200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501}

// understood are the final statuses this cache knows the semantics of,
// for must-understand (RFC 9111 section 5.2.2.3).
var understood = []int{200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501}

// lifetime is a response's freshness lifetime (RFC 9111 section 4.2.1) and
// whether it was stated. date is its Date (or the response time).
func (c *Cache) lifetime(status int, h http.Header, cc control, date time.Time) (time.Duration, bool) {
	var d time.Duration
	stated := true
	switch {
	case cc.surrogateMaxAge != absent:
		d = time.Duration(cc.surrogateMaxAge) * time.Second
	case cc.sMaxAge != absent:
		d = time.Duration(cc.sMaxAge) * time.Second
	case cc.maxAge != absent:
		d = time.Duration(cc.maxAge) * time.Second
	case len(h["Expires"]) > 0:
		// An Expires that does not parse, or several, means already
		// expired (section 5.3).
		if exp, ok := oneDate(h, "Expires"); ok {
			d = max(exp.Sub(date), 0)
		}
	default:
		stated = false
		d = c.heuristic(status, h, cc, date)
	}
	if c.opt.MaxTTL > 0 {
		d = min(d, c.opt.MaxTTL)
	}
	return d, stated
}

// heuristic is the freshness of a response that states none.
func (c *Cache) heuristic(status int, h http.Header, cc control, date time.Time) time.Duration {
	if !cc.public && !slices.Contains(heuristicStatuses, status) {
		return 0
	}
	if c.opt.Heuristics {
		if lm, ok := oneDate(h, "Last-Modified"); ok && lm.Before(date) {
			d := date.Sub(lm) / 10
			if c.opt.DefaultTTL > 0 {
				d = min(d, c.opt.DefaultTTL)
			}
			return d
		}
	}
	return c.opt.DefaultTTL
}

// oneDate parses a field that must be one HTTP-date.
func oneDate(h http.Header, name string) (time.Time, bool) {
	vs := h[name]
	if len(vs) != 1 {
		return time.Time{}, false
	}
	t, err := http.ParseTime(vs[0])
	return t, err == nil
}

// ageValue parses Age (RFC 9111 section 5.1): exactly one non-negative
// integer. Anything else (a list, a float, a parameter) cannot be trusted,
// so it reads as older than any freshness: the response is stale.
func ageValue(h http.Header) time.Duration {
	vs, ok := h["Age"]
	if !ok {
		return 0
	}
	if len(vs) != 1 {
		return maxDelta * time.Second
	}
	n := delta(vs[0])
	if n == absent {
		return maxDelta * time.Second
	}
	return time.Duration(n) * time.Second
}

// newObject builds the object a response stores, from the times its
// request was sent and its head arrived; body is filled in once read.
func (c *Cache) newObject(resp *http.Response, cc control, requestTime, responseTime time.Time) *object {
	h := resp.Header
	date, ok := oneDate(h, "Date")
	if !ok {
		date = responseTime
	}
	// Section 4.2.3: the age it had on arrival, which the transit time
	// may only add to.
	apparent := max(responseTime.Sub(date), 0)
	corrected := ageValue(h) + responseTime.Sub(requestTime)
	o := &object{
		status:       resp.StatusCode,
		header:       storedHeader(h),
		responseTime: responseTime,
		initialAge:   max(apparent, corrected),
		cc:           cc,
		etag:         h.Get("Etag"),
		lastMod:      h.Get("Last-Modified"),
	}
	o.lifetime, _ = c.lifetime(resp.StatusCode, h, cc, date)
	o.swr = window(cc.staleWhileRevalidate, c.opt.StaleWhileRevalidate)
	o.sie = window(cc.staleIfError, c.opt.StaleIfError)
	o.varyNames, o.varyStar = varyNames(h)
	return o
}

// window is a stated RFC 5861 window or the default.
func window(stated int64, def time.Duration) time.Duration {
	if stated != absent {
		return time.Duration(stated) * time.Second
	}
	return def
}

// seconds formats d as whole seconds, for Age and ttl.
func seconds(d time.Duration) string {
	return strconv.FormatInt(int64(d/time.Second), 10)
}

// splitList splits a comma-separated field value, trimming each element
// and dropping empty ones.
func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = trimOWS(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
