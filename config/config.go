package config

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"sluice/internal/access"
	"sluice/internal/pool"
	"sluice/internal/proxyheader"
)

// Config is one loaded configuration file, with every default filled in.
type Config struct {
	// File is the path or name the configuration was parsed from.
	File string
	// DrainTimeout is how long live connections may finish after SIGTERM
	// or SIGINT before they are closed; zero closes them at once.
	DrainTimeout time.Duration
	// DrainRate is drain_rate, every pool's default (Pool.DrainRate has
	// it filled in); zero closes at once.
	DrainRate access.Rate
	// PIDFile, if not empty, is where sluice run writes its process id,
	// for sluice reload to signal it; "" writes none.
	PIDFile string
	// Log says how sluice writes its log.
	Log Log
	// Listeners are the addresses sluice accepts connections on, sorted by
	// Name; there is at least one.
	Listeners []Listener
	// Pools are the named backend sets listeners forward to, sorted by Name.
	Pools []Pool
	// Caches are the [caches.NAME] tables HTTP routes may name, sorted by
	// Name.
	Caches []Cache
	// Admin is the [admin] table; nil without one (no admin listener).
	Admin *Admin
	// BGP is the [bgp] table; nil without one (nothing announced).
	BGP *BGP
	// Warnings are problems that do not stop sluice from running, such
	// as an admin listener open to the network without a token, sorted
	// by line. sluice check prints them; run logs them.
	Warnings Errors
}

// Log is the [log] table.
type Log struct {
	// Format is LogText (the zero value) or LogJSON.
	Format LogFormat
	// Level is the least severe level written; the zero value is Info.
	Level slog.Level
	// HTTPFormat is how HTTP listeners log requests: HTTPLogRecord (the
	// zero value), HTTPLogCommon or HTTPLogCombined.
	HTTPFormat HTTPLogFormat
}

// HTTPLogFormat says how HTTP requests are logged.
type HTTPLogFormat uint8

const (
	// HTTPLogRecord logs requests as records in the log's Format.
	HTTPLogRecord HTTPLogFormat = iota
	// HTTPLogCommon writes NCSA Common Log Format lines.
	HTTPLogCommon
	// HTTPLogCombined writes Combined Log Format lines (Common plus
	// referer and user agent).
	HTTPLogCombined
)

var httpLogFormatNames = [...]string{HTTPLogRecord: "record", HTTPLogCommon: "common", HTTPLogCombined: "combined"}

// String returns the name used in the configuration file.
func (f HTTPLogFormat) String() string {
	if int(f) < len(httpLogFormatNames) {
		return httpLogFormatNames[f]
	}
	return fmt.Sprintf("HTTPLogFormat(%d)", uint8(f))
}

// UnmarshalText implements encoding.TextUnmarshaler, accepting "record",
// "common" and "combined".
func (f *HTTPLogFormat) UnmarshalText(text []byte) error {
	for i, name := range httpLogFormatNames {
		if string(text) == name {
			*f = HTTPLogFormat(i)
			return nil
		}
	}
	return fmt.Errorf("unknown HTTP log format %s: want \"record\", \"common\" or \"combined\"", quote(string(text)))
}

// LogFormat says how log records are written. The zero value is LogText.
type LogFormat uint8

const (
	// LogText writes slog's key=value text format.
	LogText LogFormat = iota
	// LogJSON writes one JSON object per line.
	LogJSON
)

var logFormatNames = [...]string{LogText: "text", LogJSON: "json"}

// String returns the name used in the configuration file.
func (f LogFormat) String() string {
	if int(f) < len(logFormatNames) {
		return logFormatNames[f]
	}
	return fmt.Sprintf("LogFormat(%d)", uint8(f))
}

// UnmarshalText implements encoding.TextUnmarshaler, accepting "text" and
// "json".
func (f *LogFormat) UnmarshalText(text []byte) error {
	for i, name := range logFormatNames {
		if string(text) == name {
			*f = LogFormat(i)
			return nil
		}
	}
	return fmt.Errorf("unknown log format %s: want \"text\" or \"json\"", quote(string(text)))
}

// Protocol is the transport a listener accepts. The zero value is TCP.
type Protocol uint8

const (
	// TCP proxies TCP connections, splicing bytes in both directions.
	TCP Protocol = iota
	// UDP balances UDP flows, each with a session to one backend.
	UDP
	// HTTP is an HTTP/1.1 and h2c reverse proxy with routes (package l7).
	HTTP
)

var protocolNames = [...]string{TCP: "tcp", UDP: "udp", HTTP: "http"}

// String returns the name used in the configuration file.
func (p Protocol) String() string {
	if int(p) < len(protocolNames) {
		return protocolNames[p]
	}
	return fmt.Sprintf("Protocol(%d)", uint8(p))
}

// UnmarshalText implements encoding.TextUnmarshaler, accepting "tcp",
// "udp" and "http".
func (p *Protocol) UnmarshalText(text []byte) error {
	for i, name := range protocolNames {
		if string(text) == name {
			*p = Protocol(i)
			return nil
		}
	}
	return fmt.Errorf("unknown protocol %s: want \"tcp\", \"udp\" or \"http\"", quote(string(text)))
}

// Listener is one [listeners.NAME] table.
type Listener struct {
	// Name is the table key, 1 to 64 characters of [A-Za-z0-9_.-].
	Name string
	// Bind is the address to listen on; [::] stands for every address
	// (written ":PORT"). The port is never zero.
	Bind netip.AddrPort
	// BindText is bind as written, before any go-sockaddr template in it
	// was resolved.
	BindText string
	// Protocol is the transport accepted. The fields below marked TCP or
	// UDP are zero for a listener of the other protocol.
	Protocol Protocol
	// Pool names the pool connections are forwarded to; it is in
	// Config.Pools.
	Pool string
	// MaxConnections (TCP, HTTP) caps live (client) connections; zero
	// means unlimited.
	MaxConnections int
	// Sockets is the number of SO_REUSEPORT listening sockets, 1 to 1024;
	// zero in the file is replaced at load by runtime.GOMAXPROCS(0).
	Sockets int
	// ConnectTimeout (TCP) bounds each dial to a backend; > 0.
	ConnectTimeout time.Duration
	// IdleTimeout (TCP) closes a connection after this long with no bytes
	// in either direction; > 0.
	IdleTimeout time.Duration
	// HalfClosedTimeout (TCP) closes a connection after this long with no
	// bytes once one side has sent FIN; > 0.
	HalfClosedTimeout time.Duration
	// KeepAlive (TCP) is the keep-alive probes sent to clients; the zero
	// value sends none.
	KeepAlive KeepAlive
	// SessionTimeout (UDP) ends a session after this long with no
	// datagram either way; > 0.
	SessionTimeout time.Duration
	// Responses (UDP) ends a session once its backend has sent this many
	// datagrams back; zero means no limit.
	Responses int
	// MaxSessions (UDP) caps live sessions; datagrams of new flows beyond
	// it are dropped. 1 to 1048576.
	MaxSessions int

	// ProxyProtocol is the PROXY header versions accepted from
	// ProxyProtocolFrom (only proxyheader.V2 on UDP); zero means the
	// listener takes no headers.
	ProxyProtocol proxyheader.Versions
	// ProxyProtocolFrom are the senders that must send a PROXY header;
	// a header from anyone else is refused. Non-empty exactly when
	// ProxyProtocol is set.
	ProxyProtocolFrom []netip.Prefix
	// ProxyProtocolTimeout (TCP) is how long a trusted sender has to send
	// its header; > 0 when ProxyProtocol is set, else zero.
	ProxyProtocolTimeout time.Duration
	// Allow, if not empty, are the only clients let in; Deny are refused
	// even if allowed. Both are checked against the real client (after a
	// PROXY header); empty means no list.
	Allow, Deny []netip.Prefix
	// MaxConnectionsPerClient (TCP) caps each client address's live
	// connections; zero means no cap.
	MaxConnectionsPerClient int
	// NewConnectionsPerClient caps each client address's new connections
	// (UDP: new flows); zero means no cap.
	NewConnectionsPerClient access.Rate
	// HTTP holds an HTTP listener's routes and limits; nil unless
	// Protocol is HTTP. Pool is then optional: the pool of requests no
	// route matches ("" answers them 404). ConnectTimeout and IdleTimeout
	// apply (idle: between requests on a client connection).
	HTTP *HTTPListener
	// SNIRoutes (TCP) route TLS connections by the server name in their
	// ClientHello, undecrypted; Pool is then the pool of names no route
	// covers ("" refuses them). Empty: no routing by name.
	SNIRoutes []SNIRoute
	// ClientHelloTimeout (TCP, with SNIRoutes) bounds the wait for a
	// whole ClientHello; > 0, else zero.
	ClientHelloTimeout time.Duration
	// Announce are the prefixes announced over BGP while the listener is
	// up and its pool has a backend up; nil announces nothing.
	Announce []netip.Prefix
	// TLS, if not nil, terminates TLS on the listener's sockets (HTTP
	// listeners only so far).
	TLS *ListenerTLS
}

// Pool is one [pools.NAME] table.
type Pool struct {
	// Name is the table key, 1 to 64 characters of [A-Za-z0-9_.-].
	Name string
	// Balance is the algorithm that picks a backend.
	Balance pool.Balance
	// HashKey is what Maglev hashes; meaningful only when Balance is
	// pool.Maglev.
	HashKey pool.HashKey
	// TableSize is the Maglev lookup table size, a prime at least
	// len(Backends) and at most 1000003; zero unless Balance is pool.Maglev.
	TableSize int
	// Retries is how many other backends are tried after a failed connect,
	// 0 to 100.
	Retries int
	// Backends are in file order; there is at least one, and no address
	// appears twice. It is empty when Discover is set.
	Backends []Backend
	// Discover, if not nil, says where in DNS the backends are found.
	Discover *Discover
	// OnDown says whether a backend's connections are closed when its
	// health checks mark it down.
	OnDown OnDown
	// SlowStart is how long a backend coming back up takes to get its
	// full weight back; zero means at once.
	SlowStart time.Duration
	// PassiveFailures is how many connections to a backend in a row must
	// fail (connect refused or timed out, or reset by the backend) to
	// eject it; zero turns passive checks off. 0 to 1000.
	PassiveFailures int
	// PassiveBackoff is how long a first ejection lasts; > 0. With Health
	// set it is the default and unused: the checks end ejections.
	PassiveBackoff time.Duration
	// Health is the pool's [health] table, nil if it has none (then its
	// backends are not actively checked).
	Health *Health
	// SendProxy is the PROXY header version sent to backends first, on
	// every connection and health check (proxyheader.V1 or V2); zero
	// sends none.
	SendProxy proxyheader.Versions
	// KeepAlive is the keep-alive probes TCP listeners send to this
	// pool's backends; the zero value sends none.
	KeepAlive KeepAlive
	// H2C makes HTTP listeners speak HTTP/2 over cleartext to this pool's
	// backends (gRPC servers); false is HTTP/1.1.
	H2C bool
	// TLS, if not nil, speaks TLS to the backends (HTTP listeners, and
	// the pool's https and tls checks, which share it).
	TLS *PoolTLS
	// DrainRate bounds how fast a drain closes the pool's TCP
	// connections: those left on a backend drained by hand or removed
	// once the drain timeout has passed, and those left at shutdown.
	// Zero closes them at once (and a backend drained by hand keeps its
	// connections until they end).
	DrainRate access.Rate
}

// Backend is one [[pools.NAME.backends]] entry.
type Backend struct {
	// Address is an IP address and a non-zero port.
	Address netip.AddrPort
	// Weight is the backend's share relative to the others, 1 to 256.
	Weight int
	// Backup marks a backend used only while no other backend of the
	// pool is up.
	Backup bool
	// State is the administrative state the backend starts in.
	State pool.Admin
	// Health is how this backend is checked: the pool's Health with the
	// backend's overrides and its check address; nil if the pool has no
	// checks.
	Health *Health
}

// Pool returns the pool with the given name, or nil if there is none.
func (c *Config) Pool(name string) *Pool {
	for i := range c.Pools {
		if c.Pools[i].Name == name {
			return &c.Pools[i]
		}
	}
	return nil
}
