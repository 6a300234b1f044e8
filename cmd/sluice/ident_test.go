package main

import (
	"strings"
	"testing"
)

// TestNotWiredRefused checks that run refuses keys it does not act on yet
// rather than running without them.
func TestNotWiredRefused(t *testing.T) {
	path := writeFile(t, `[listeners.a]
bind = "127.0.0.1:7999"
pool = "p"
deny = ["192.0.2.0/24"]
[pools.p]
[[pools.p.backends]]
address = "127.0.0.1:7998"
`)
	out, code := runSluice(t, "run", "-c", path)
	if code == 0 || !strings.Contains(out, "listener a: deny is accepted by check but not implemented by run yet") {
		t.Fatalf("run exited %d:\n%s", code, out)
	}
}
