package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// nginxStreamModule is where Debian's libnginx-mod-stream installs the
// stream module; the bench's nginx config loads it by this path because it
// does not read /etc/nginx/modules-enabled.
const nginxStreamModule = "/usr/lib/nginx/modules/ngx_stream_module.so"

// lookBin finds a program in PATH or in the sbin directories, which a
// non-login root shell may not have in PATH.
func lookBin(name string) (string, bool) {
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := dir + "/" + name
		if _, err := os.Stat(p); err == nil {
			return p, true
		}
	}
	return "", false
}

// ensurePeers installs HAProxy and nginx with its stream module through
// apt-get when any is missing, saying so, and returns the binaries' paths
// by system key.
func ensurePeers(logf func(string, ...any), want []*system) (map[string]string, error) {
	var pkgs []string
	bins := map[string]string{}
	for _, s := range want {
		switch s {
		case haproxySystem:
			if p, ok := lookBin("haproxy"); ok {
				bins[s.key] = p
			} else {
				pkgs = append(pkgs, "haproxy")
			}
		case nginxSystem:
			p, ok := lookBin("nginx")
			if ok {
				bins[s.key] = p
			} else {
				pkgs = append(pkgs, "nginx")
			}
			if _, err := os.Stat(nginxStreamModule); err != nil {
				pkgs = append(pkgs, "libnginx-mod-stream")
			}
		}
	}
	if len(pkgs) > 0 {
		logf("installing %s with apt-get", strings.Join(pkgs, " "))
		if err := aptInstall(pkgs); err != nil {
			return nil, err
		}
		return ensurePeers(func(string, ...any) {}, want)
	}
	stopServices(logf)
	return bins, nil
}

// ensureClients finds the programs of the real-client scenarios among
// scens, installing their Debian packages with apt-get when they are
// missing, as ensurePeers does for the proxies.
func ensureClients(logf func(string, ...any), scens []*scenario) (clientTools, error) {
	var tools clientTools
	var pkgs []string
	needs := func(name string) bool {
		return slices.ContainsFunc(scens, func(sc *scenario) bool { return sc.needs == name })
	}
	if needs("postgres") {
		pg, err := findPgTools()
		if err != nil {
			pkgs = append(pkgs, "postgresql")
		}
		tools.pg = pg
	}
	if needs("redis") {
		srv, ok1 := lookBin("redis-server")
		cli, ok2 := lookBin("redis-benchmark")
		if !ok1 || !ok2 {
			pkgs = append(pkgs, "redis-server", "redis-tools")
		}
		tools.redis, tools.redisBench = srv, cli
	}
	if needs("h2load") {
		p, ok := lookBin("h2load")
		if !ok {
			pkgs = append(pkgs, "nghttp2-client")
		}
		tools.h2load = p
	}
	if len(pkgs) == 0 {
		return tools, nil
	}
	logf("installing %s with apt-get", strings.Join(pkgs, " "))
	if err := aptInstall(pkgs); err != nil {
		return tools, err
	}
	tools, err := ensureClients(func(string, ...any) {}, scens)
	if err == nil && (needs("postgres") && tools.pg == "" || needs("redis") && tools.redisBench == "" || needs("h2load") && tools.h2load == "") {
		err = fmt.Errorf("installing %s: the programs are still missing", strings.Join(pkgs, " "))
	}
	return tools, err
}

// aptInstall installs packages, refreshing the package lists once if the
// first attempt fails (a fresh machine may have none).
func aptInstall(pkgs []string) error {
	install := func() error {
		cmd := exec.Command("apt-get", append([]string{"install", "-y"}, pkgs...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get install %s: %w: %s", strings.Join(pkgs, " "), err, lastLines(out, 5))
		}
		return nil
	}
	if install() == nil {
		return nil
	}
	if out, err := exec.Command("apt-get", "update").CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get update: %w: %s", err, lastLines(out, 5))
	}
	return install()
}

// stopServices stops HAProxy and nginx services that a package install
// (or the machine) started: they would take CPU and memory the bench
// measures. Only instances named by their system pid files are touched.
func stopServices(logf func(string, ...any)) {
	for _, svc := range []struct{ name, pidfile string }{
		{"haproxy", "/run/haproxy.pid"},
		{"nginx", "/run/nginx.pid"},
	} {
		b, err := os.ReadFile(svc.pidfile)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || syscall.Kill(pid, 0) != nil {
			continue
		}
		logf("stopping the system %s service (pid %d), which the bench does not own", svc.name, pid)
		if out, err := exec.Command("service", svc.name, "stop").CombinedOutput(); err != nil {
			logf("  could not stop it: %v: %s", err, lastLines(out, 3))
		}
	}
}

// versions describes the software under test, for the report. A sluice
// built by the bench is named by the checkout's commit; a prebuilt one
// (-sluice) by what it says of itself.
func versions(root string, bins map[string]string, tools clientTools, prebuilt bool) map[string]string {
	v := map[string]string{"go": runtime.Version()}
	if tools.pg != "" {
		if out, err := exec.Command(tools.pg.bin("postgres"), "--version").Output(); err == nil {
			v["postgres"] = firstLine(out)
		}
	}
	if tools.redis != "" {
		if out, err := exec.Command(tools.redis, "--version").Output(); err == nil {
			v["redis"] = firstLine(out)
		}
	}
	if out, err := exec.Command("go", "version").Output(); err == nil {
		v["go"] = strings.TrimPrefix(strings.TrimSpace(string(out)), "go version ")
	}
	if p, ok := bins["haproxy"]; ok {
		if out, err := exec.Command(p, "-v").Output(); err == nil {
			v["haproxy"] = firstLine(out)
		}
	}
	if p, ok := bins["nginx"]; ok {
		// nginx prints its version on stderr.
		if out, err := exec.Command(p, "-v").CombinedOutput(); err == nil {
			v["nginx"] = firstLine(out)
		}
	}
	if p, ok := bins["sluice"]; ok && prebuilt {
		if out, err := exec.Command(p, "version").Output(); err == nil {
			v["sluice"] = p + ", " + firstLine(out)
		}
		return v
	}
	cmd := exec.Command("git", "describe", "--always", "--dirty")
	cmd.Dir = root
	if out, err := cmd.Output(); err == nil {
		v["sluice"] = "commit " + strings.TrimSpace(string(out))
	}
	return v
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// moduleRoot walks up from the working directory to the go.mod of module
// sluice, so `go run ./bench` works from the repository root or bench/.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding module root: %w", err)
	}
	for {
		b, err := os.ReadFile(dir + "/go.mod")
		if err == nil && strings.HasPrefix(firstLine(b), "module sluice") {
			return dir, nil
		}
		parent := dir[:max(strings.LastIndexByte(dir, '/'), 0)]
		if parent == dir || parent == "" {
			return "", fmt.Errorf("finding module root: no go.mod of module sluice above the working directory")
		}
		dir = parent
	}
}
