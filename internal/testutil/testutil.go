// Package testutil holds what sluice's tests share, so that each package
// does not grow its own copy: waiting for a condition by polling it to a
// deadline, never by sleeping a fixed time and hoping.
//
//	testutil.Eventually(t, 5*time.Second, "the session to end", func() bool {
//		return s.Sessions() == 0
//	})
package testutil

import (
	"testing"
	"time"
)

// pollEvery is how often Eventually tries its condition: often enough that
// a test waits little past the moment it holds, seldom enough that polling
// does not crowd a 2-core machine running several suites.
const pollEvery = 5 * time.Millisecond

// Eventually returns once cond holds, trying it every few milliseconds;
// if d passes first it fails t (Fatal) saying it was waiting for what.
// Call it from the test's goroutine only.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(pollEvery)
	}
}
