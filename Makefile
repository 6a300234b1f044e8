# sluice: see README.md.
GO ?= go
# Programs the test suite runs for real, as program:Debian-package pairs:
# strace proves the splice path; dig queries dnsmasq backends through UDP
# listeners. dnsmasq-base is the dnsmasq binary without the system service
# the dnsmasq package would start on port 53. Health checks run real Redis,
# PostgreSQL and MariaDB servers (internal/dbtest), redis-benchmark and
# pgbench; Debian keeps PostgreSQL's programs off PATH, hence the globs
# (postgresql-15 has postgres and pgbench, postgresql-client-15
# pg_basebackup). HTTP listeners are tested with curl against nginx and Go
# backends; the bench's HTTP/2 rows run h2load. Tests start their own servers on free ports and never use the
# system services these packages may start. promtool (from Debian's
# prometheus, whose service the tests never start) checks the admin
# listener's /metrics; chromium, driven by npm's puppeteer-core (installed
# from its lock file, no browser download), loads its status page. The
# BGP/ECMP test builds network namespaces (ip, sysctl) around a BIRD 2
# router (bird2, whose service the tests never start).
TEST_PACKAGES := strace:strace dig:dnsutils dnsmasq:dnsmasq-base promtool:prometheus \
	chromium:chromium node:nodejs npm:npm \
	redis-server:redis-server redis-cli:redis-tools redis-benchmark:redis-tools \
	/usr/lib/postgresql/*/bin/postgres:postgresql \
	/usr/lib/postgresql/*/bin/pgbench:postgresql \
	/usr/lib/postgresql/*/bin/pg_basebackup:postgresql-client \
	mariadbd:mariadb-server mariadb-install-db:mariadb-server mariadb:mariadb-client \
	haproxy:haproxy nginx:nginx /usr/lib/nginx/modules/ngx_stream_module.so:libnginx-mod-stream \
	curl:curl h2load:nghttp2-client \
	ip:iproute2 sysctl:procps bird:bird2

# The status page's browser test and its npm lock file.
BROWSER_TEST := cmd/sluice/testdata/browser
# The HTTP caching test suite (npm http-cache-tests), which
# cmd/sluice/cache_suite_test.go runs against a cache route.
CACHE_SUITE := cmd/sluice/testdata/cache-suite

.PHONY: all build run test test-deps vet bench bench-quick soak fuzz clean

all: build

build:
	$(GO) build -o sluice ./cmd/sluice

# The demo: three backends on 127.0.0.1:7101-7103 behind 127.0.0.1:7000
# (TCP) and 127.0.0.1:7001 (UDP), and three web servers on 7111-7113 behind
# 127.0.0.1:7080 (HTTP).
run:
	$(GO) run ./cmd/sluice demo

# Installs what the tests need (apt-get, as root) when it is missing, then
# runs the whole suite with the race detector.
test: test-deps vet
	$(GO) test -race -timeout 12m ./...
	@# l7's tests again with the HTTP/1.1 fast path off: net/http alone.
	$(GO) test -race -timeout 5m ./l7 -args -nethttp
	$(GO) run ./cmd/sluice check -c examples/sluice.toml
	$(GO) run ./cmd/sluice check -c examples/two-tier-edge.toml
	$(GO) run ./cmd/sluice check -c examples/two-tier-app.toml
	$(GO) run ./cmd/sluice check -c examples/l7.toml
	$(GO) run ./cmd/sluice check -c examples/sni-passthrough.toml
	$(GO) run ./cmd/sluice check -c examples/scale-out.toml
	$(GO) run ./cmd/sluice check -c examples/acme.toml

test-deps:
	@missing=""; for p in $(TEST_PACKAGES); do \
		command -v $${p%%:*} >/dev/null || test -x /usr/sbin/$${p%%:*} || test -f $${p%%:*} || \
			missing="$$missing $${p#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing test dependencies:$$missing"; \
		if [ "$$(id -u)" -eq 0 ]; then SUDO=""; else SUDO=sudo; fi; \
		$$SUDO apt-get install -y $$missing >/dev/null 2>&1 || \
		{ $$SUDO apt-get update >/dev/null && $$SUDO apt-get install -y $$missing; }; \
	fi
	@# h2spec checks the HTTP/2 listener; v2.2.1 is its only usable tag.
	@command -v h2spec >/dev/null || test -x "$$($(GO) env GOPATH)/bin/h2spec" || \
		$(GO) install github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible
	@# pebble (Let's Encrypt's test CA) and its DNS for the ACME test.
	@for p in pebble pebble-challtestsrv; do \
		command -v $$p >/dev/null || test -x "$$($(GO) env GOPATH)/bin/$$p" || \
			$(GO) install github.com/letsencrypt/pebble/v2/cmd/$$p@v2.10.3; \
	done
	@test -d $(BROWSER_TEST)/node_modules/puppeteer-core || \
		(cd $(BROWSER_TEST) && npm ci --no-audit --no-fund)
	@test -d $(CACHE_SUITE)/node_modules/http-cache-tests || \
		(cd $(CACHE_SUITE) && npm ci --no-audit --no-fund)

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { echo "gofmt would change:"; gofmt -l .; exit 1; }

# Side by side with HAProxy and nginx; see README's performance section.
# BENCHFLAGS passes options, e.g. BENCHFLAGS='-pin -only pgbench,newconn'.
BENCHFLAGS ?=
bench:
	$(GO) run ./bench $(BENCHFLAGS)

bench-quick:
	$(GO) run ./bench -quick $(BENCHFLAGS)

# Not in CI: sluice under mixed load (TCP, long streams, UDP, HTTP) with
# reloads and upgrades for SOAK (30 minutes), printing its descriptors,
# goroutines and memory over time; fails if they grow. SOAK=5m for a
# shorter run.
SOAK ?= 30m
soak:
	SOAK=$(SOAK) $(GO) test -run '^TestSoak$$' -count=1 -v -timeout 2h ./cmd/sluice

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 60s ./config
	$(GO) test -run '^$$' -fuzz FuzzScanLines -fuzztime 60s ./config
	$(GO) test -run '^$$' -fuzz FuzzParseDNSReply -fuzztime 60s ./health
	$(GO) test -run '^$$' -fuzz FuzzPostgresStartupReply -fuzztime 60s ./health
	$(GO) test -run '^$$' -fuzz FuzzMySQLGreeting -fuzztime 60s ./health
	$(GO) test -run '^$$' -fuzz FuzzRESP -fuzztime 60s ./health
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 60s ./internal/proxyheader
	$(GO) test -run '^$$' -fuzz FuzzAppend -fuzztime 60s ./internal/proxyheader
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 60s ./internal/discover
	$(GO) test -run '^$$' -fuzz FuzzCovers -fuzztime 60s ./l7/route
	$(GO) test -run '^$$' -fuzz '^FuzzParseHead$$' -fuzztime 60s ./l7
	$(GO) test -run '^$$' -fuzz '^FuzzParseResponse$$' -fuzztime 60s ./l7
	$(GO) test -run '^$$' -fuzz '^FuzzChunkScanner$$' -fuzztime 60s ./l7
	$(GO) test -run '^$$' -fuzz FuzzServerName -fuzztime 60s ./internal/clienthello
	$(GO) test -run '^$$' -fuzz FuzzPgFirst -fuzztime 60s ./internal/tlsterm

clean:
	rm -f sluice
