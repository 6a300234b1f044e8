package main

import (
	"fmt"
	"strings"
	"testing"
)

// sluice reload and sluice upgrade reach a sluice with [admin] through its
// API and read its answer: a reload prints that it was applied; an
// upgrade that names a program over TCP is refused (403, an answer that
// is no upgrade result) and the command says so and exits 1.
func TestReloadAndUpgradeCommandsThroughTheAPI(t *testing.T) {
	addr, adm := freePort(t), freePort(t)
	path := writeFile(t, reloadConfig(addr, "round_robin", "10m", fmt.Sprintf("[admin]\nbind = %q\n", adm), nameBackend(t, "a")))
	inProcessReload(t, path)
	if out, code := runSluice(t, "reload", "-c", path); code != 0 || !strings.Contains(out, path+": reloaded") {
		t.Errorf("sluice reload exited %d:\n%s", code, out)
	}
	if out, code := runSluice(t, "upgrade", "-c", path, "-binary", "/bin/false"); code != 1 || !strings.Contains(out, "403 Forbidden") {
		t.Errorf("sluice upgrade -binary over TCP exited %d:\n%s", code, out)
	}
}
