package cache

import (
	"net/http"
	"testing"
)

func TestParseControl(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
		check func(control) bool
	}{
		{"max-age", []string{"max-age=60"}, func(c control) bool { return c.maxAge == 60 }},
		{"quoted max-age", []string{`max-age="60"`}, func(c control) bool { return c.maxAge == 60 }},
		{"single quotes are not quotes", []string{"max-age='60'"}, func(c control) bool { return c.maxAge == absent }},
		{"leading zeros", []string{"max-age=003600"}, func(c control) bool { return c.maxAge == 3600 }},
		{"float is invalid", []string{"max-age=3600.0"}, func(c control) bool { return c.maxAge == absent }},
		{"space before =", []string{"max-age =60"}, func(c control) bool { return c.maxAge == absent }},
		{"huge saturates", []string{"max-age=99999999999999999999"}, func(c control) bool { return c.maxAge == maxDelta }},
		{"conflict takes the smaller", []string{"max-age=60, max-age=0"}, func(c control) bool { return c.maxAge == 0 }},
		{"across lines", []string{"max-age=0", "max-age=60"}, func(c control) bool { return c.maxAge == 0 }},
		{"max-age inside a quoted string", []string{`foo="max-age=5, no-store", max-age=60`},
			func(c control) bool { return c.maxAge == 60 && !c.noStore }},
		{"case", []string{"No-Store, MAX-AGE=5"}, func(c control) bool { return c.noStore && c.maxAge == 5 }},
		{"max-stale without value", []string{"max-stale"}, func(c control) bool { return c.maxStaleAny && c.maxStale == absent }},
		{"flags", []string{"private, public, must-revalidate, proxy-revalidate, only-if-cached, must-understand, no-cache"},
			func(c control) bool {
				return c.private && c.public && c.mustRevalidate && c.proxyRevalidate && c.onlyIfCached && c.mustUnderstand && c.noCache
			}},
		{"targeted directives are not Cache-Control's", []string{"max-age=60;dev"}, func(c control) bool { return c.maxAge == absent }},
		{"unterminated quote keeps what came before", []string{`max-age=5, x="abc`}, func(c control) bool { return c.maxAge == 5 }},
		{"stale windows", []string{"stale-while-revalidate=30, stale-if-error=60"},
			func(c control) bool { return c.staleWhileRevalidate == 30 && c.staleIfError == 60 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if c := parseControl(http.Header{"Cache-Control": tc.lines}); !tc.check(c) {
				t.Errorf("%q parsed as %+v", tc.lines, c)
			}
		})
	}
}

func TestSurrogateControlTargets(t *testing.T) {
	for _, tc := range []struct {
		sc      string
		maxAge  int64
		noStore bool
	}{
		{"max-age=60", 60, false},
		{"max-age=60;sluice", 60, false},
		{"max-age=60;other", absent, false},
		{"no-store;other, max-age=5", 5, false},
		{"no-store", absent, true},
	} {
		c := responseControl(http.Header{"Surrogate-Control": {tc.sc}, "Cache-Control": {"no-store"}}, "sluice")
		wantNoStore := tc.noStore || tc.maxAge == absent
		if c.surrogateMaxAge != tc.maxAge || c.noStore != wantNoStore {
			t.Errorf("%q: max-age %d no-store %v, want %d %v", tc.sc, c.surrogateMaxAge, c.noStore, tc.maxAge, wantNoStore)
		}
	}
}

func TestAgeValue(t *testing.T) {
	for _, tc := range []struct {
		age   []string
		stale bool
	}{
		{[]string{"10"}, false}, {nil, false}, {[]string{"abc"}, true}, {[]string{"-1"}, true},
		{[]string{"1.5"}, true}, {[]string{"0, 0"}, true}, {[]string{"0", "0"}, true}, {[]string{"5;x=1"}, true},
	} {
		h := http.Header{}
		if tc.age != nil {
			h["Age"] = tc.age
		}
		if got := ageValue(h) >= maxDelta*1e9; got != tc.stale {
			t.Errorf("Age %q: stale %v, want %v", tc.age, got, tc.stale)
		}
	}
}

// FuzzParseControl feeds the parser field lines from anyone: it must not
// panic, and every duration it yields is absent or in 0..2^31.
func FuzzParseControl(f *testing.F) {
	for _, s := range []string{"max-age=60", `a="b,c", max-age=0`, `x="\"`, "max-age=1;t, no-store", ",,,", "max-stale", `"`, "max-age=99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := responseControl(http.Header{"Cache-Control": {s}, "Surrogate-Control": {s}}, "sluice")
		for _, d := range []int64{c.maxAge, c.sMaxAge, c.minFresh, c.maxStale, c.staleWhileRevalidate, c.staleIfError, c.surrogateMaxAge} {
			if d != absent && (d < 0 || d > maxDelta) {
				t.Fatalf("%q: duration %d", s, d)
			}
		}
	})
}
