package config

import (
	"log/slog"
	"math"
	"runtime"
	"time"

	"sluice/internal/pool"
)

// Every default and limit lives here; the parser only applies them.
const (
	defaultDrainTimeout      = 30 * time.Second
	defaultConnectTimeout    = 5 * time.Second
	defaultIdleTimeout       = 10 * time.Minute
	defaultHalfClosedTimeout = time.Minute
	defaultTableSize         = 65537 // prime; see the field notes on Maglev
	defaultRetries           = 3
	defaultWeight            = 1
	defaultSessionTimeout    = 30 * time.Second
	defaultMaxSessions       = 65536
	// A proxy in front sends its header with its first segment; 5 s is
	// HAProxy's and nginx's default for the whole preamble.
	defaultProxyProtocolTimeout = 5 * time.Second

	defaultHealthInterval  = 2 * time.Second
	defaultHealthTimeout   = time.Second
	defaultRise            = 2
	defaultFall            = 3
	defaultPassiveFailures = 3
	defaultPassiveBackoff  = 10 * time.Second
	maxRiseFall            = 100
	maxPassiveFailures     = 1000
	maxSecretSize          = 4096

	maxNameLen   = 64
	maxSockets   = 1024
	maxRetries   = 100
	maxWeight    = 256
	maxTableSize = 1000003 // prime
	maxResponses = math.MaxInt32
	// No client holds a million connections: a larger cap is a typo.
	maxConnsPerClient = 1_000_000
	// Each UDP session holds a socket, and no process may open more fds
	// than fs.nr_open, 1048576 by default.
	maxSessions = 1 << 20

	// HTTP listeners. An idle keep-alive connection costs a goroutine
	// and buffers: two minutes is nginx's 75 s with room for clients
	// that poll every minute.
	defaultHTTPIdleTimeout    = 2 * time.Minute
	defaultReadHeaderTimeout  = 10 * time.Second
	defaultMaxHeaderBytes     = 64 << 10
	defaultMaxURLBytes        = 8 << 10 // nginx's and HAProxy's order of size
	defaultMaxIdlePerBackend  = 64
	defaultBackendIdleTimeout = 90 * time.Second
	maxHeaderBytes            = 1 << 20
	maxRoutes                 = 1000

	// TLS: a stat of each certificate file every 10 s costs nothing and
	// picks up a renewal well before the old certificate runs out.
	defaultTLSReload     = 10 * time.Second
	defaultExpiryWarning = 30 * 24 * time.Hour // certbot renews at 30 days left
	// TCP keep-alive probes, once keepalive_idle turns them on: an orphan
	// (a client whose flow a router moved elsewhere) is gone within idle
	// + 30 s, while one lost probe is not enough to end a connection.
	defaultKeepAliveInterval = 10 * time.Second
	defaultKeepAliveCount    = 3
	maxKeepAliveTime         = 32767 * time.Second // MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL
	maxKeepAliveCount        = 127                 // MAX_TCP_KEEPCNT
	// BGP. Withdrawing first and waiting gives the routers time to stop
	// sending new connections here before the listeners close; a second
	// or two is typical for a router to act on a withdraw.
	defaultWithdrawDelay   = 5 * time.Second
	defaultBGPPort         = 179
	defaultBGPHoldTime     = 90 * time.Second // RFC 4271 section 10
	defaultBGPConnectRetry = 5 * time.Second
	minBGPHoldTime         = 3 * time.Second // RFC 4271 section 4.2 (or 0, which we refuse)
	maxBGPHoldTime         = 65535 * time.Second
	// A ClientHello comes in the client's first flight: 5 s is the
	// PROXY header's allowance, for the same slowloris reason.
	defaultClientHelloTimeout = 5 * time.Second
	// As long as a ClientHello may take, and a handshake's round trips.
	defaultHandshakeTimeout = 10 * time.Second
)

func defaultConfig(file string) *Config {
	return &Config{
		File:         file,
		DrainTimeout: defaultDrainTimeout,
		Log:          Log{Format: LogText, Level: slog.LevelInfo},
	}
}

// defaultListener returns a listener of protocol p with its defaults.
func defaultListener(name string, p Protocol) Listener {
	if p == HTTP {
		return Listener{
			Name:           name,
			Protocol:       HTTP,
			ConnectTimeout: defaultConnectTimeout,
			IdleTimeout:    defaultHTTPIdleTimeout,
			HTTP: &HTTPListener{
				ReadHeaderTimeout:  defaultReadHeaderTimeout,
				MaxHeaderBytes:     defaultMaxHeaderBytes,
				MaxURLBytes:        defaultMaxURLBytes,
				MaxIdlePerBackend:  defaultMaxIdlePerBackend,
				BackendIdleTimeout: defaultBackendIdleTimeout,
			},
		}
	}
	if p == UDP {
		return Listener{
			Name:           name,
			Protocol:       UDP,
			SessionTimeout: defaultSessionTimeout,
			MaxSessions:    defaultMaxSessions,
		}
	}
	return Listener{
		Name:              name,
		Protocol:          TCP,
		ConnectTimeout:    defaultConnectTimeout,
		IdleTimeout:       defaultIdleTimeout,
		HalfClosedTimeout: defaultHalfClosedTimeout,
	}
}

// defaultSockets is what sockets = 0 means: one SO_REUSEPORT socket per
// thread that can run Go code, so accepts spread over every core.
func defaultSockets() int { return min(runtime.GOMAXPROCS(0), maxSockets) }

func defaultPool(name string) Pool {
	return Pool{Name: name, Balance: pool.RoundRobin, HashKey: pool.ClientIP, Retries: defaultRetries,
		PassiveFailures: defaultPassiveFailures, PassiveBackoff: defaultPassiveBackoff}
}

// defaultHealth is a [health] table with no keys: a TCP connect check.
func defaultHealth() Health {
	return Health{
		Kind:      CheckTCP,
		Interval:  defaultHealthInterval,
		Timeout:   defaultHealthTimeout,
		Jitter:    defaultJitter(defaultHealthInterval),
		Rise:      defaultRise,
		Fall:      defaultFall,
		Method:    "GET",
		Path:      "/",
		StatusMin: 200,
		StatusMax: 399,
		Type:      1, // A
	}
}

// defaultJitter is jitter's default for an interval: a tenth of it, enough
// for checks started together to drift apart within a few intervals.
func defaultJitter(interval time.Duration) time.Duration { return interval / 10 }

func defaultBackend() Backend { return Backend{Weight: defaultWeight} }
