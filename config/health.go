package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"sluice/health"
	"sluice/internal/certs"
)

// OnDown says what happens to a backend's live connections when its health
// checks mark it down. The zero value is OnDownKeep.
type OnDown uint8

const (
	// OnDownKeep leaves them to finish.
	OnDownKeep OnDown = iota
	// OnDownClose resets them, for failover where a demoted primary must
	// lose its clients.
	OnDownClose
)

var onDownNames = [...]string{OnDownKeep: "keep", OnDownClose: "close"}

// String returns the name used in the configuration file.
func (o OnDown) String() string { return enumName(onDownNames[:], int(o), "OnDown") }

// UnmarshalText accepts "keep" and "close".
func (o *OnDown) UnmarshalText(text []byte) error {
	i := slices.Index(onDownNames[:], string(text))
	if i < 0 {
		return fmt.Errorf("unknown on_down %s: want \"keep\" or \"close\"", quote(string(text)))
	}
	*o = OnDown(i)
	return nil
}

// CheckKind names an active health check.
type CheckKind uint8

// The kinds of check, named in the file as their String.
const (
	CheckTCP CheckKind = iota
	CheckSendExpect
	CheckHTTP
	CheckHTTPS
	CheckTLS
	CheckRedis
	CheckPostgres
	CheckMySQL
	CheckDNS
	CheckUDPSendExpect
)

var checkKindNames = [...]string{
	CheckTCP: "tcp", CheckSendExpect: "send_expect", CheckHTTP: "http", CheckHTTPS: "https",
	CheckTLS: "tls", CheckRedis: "redis", CheckPostgres: "postgres", CheckMySQL: "mysql",
	CheckDNS: "dns", CheckUDPSendExpect: "udp_send_expect",
}

// String returns the name used in the configuration file.
func (k CheckKind) String() string { return enumName(checkKindNames[:], int(k), "CheckKind") }

// UnmarshalText accepts the kinds' names.
func (k *CheckKind) UnmarshalText(text []byte) error {
	i := slices.Index(checkKindNames[:], string(text))
	if i < 0 {
		return fmt.Errorf("unknown kind %s: want %s", quote(string(text)), strings.Join(checkKindNames[:], ", "))
	}
	*k = CheckKind(i)
	return nil
}

func enumName(names []string, i int, typ string) string {
	if i < len(names) {
		return names[i]
	}
	return fmt.Sprintf("%s(%d)", typ, i)
}

// Health is a [pools.NAME.health] table: how the pool's backends are
// checked. In a Backend it is that backend's copy, with its own overrides
// and the address it is checked on. Fields that do not apply to Kind are
// zero.
type Health struct {
	// Kind is the check performed.
	Kind CheckKind
	// Interval is the time between checks' starts; > 0.
	Interval time.Duration
	// Timeout bounds each check; > 0 and at most Interval.
	Timeout time.Duration
	// Jitter spreads each interval over Interval ± Jitter; at most
	// Interval/2.
	Jitter time.Duration
	// Rise and Fall are the checks in a row, 1..100, that bring a backend
	// up and take it down.
	Rise, Fall int
	// Port is the port checked on the backend's IP address; zero means
	// the backend's own port.
	Port uint16
	// Address is where a backend is checked: its address with Port, or
	// its own address override. Zero in Pool.Health.
	Address netip.AddrPort

	// Send, Expect and ExpectRegex are for send_expect and
	// udp_send_expect; ExpectRegex is nil when not set.
	Send, Expect string
	ExpectRegex  *regexp.Regexp

	// Method, Path, Host, StatusMin, StatusMax and Body are for http and
	// https. Host empty means the address checked.
	Method, Path, Host   string
	StatusMin, StatusMax int
	Body                 string

	// SNI, Verify and CAFile are for https and tls; CAFile is a PEM file
	// that has been read at load, or empty for the system's roots.
	SNI    string
	Verify bool
	CAFile string
	// ClientCert is the client certificate presented, from the pool's
	// [tls] table; zero presents none.
	ClientCert certs.Pair

	// Username (redis), User (postgres, mysql), Password (from password
	// or password_file), Database (postgres, mysql) and Role are for the
	// database kinds.
	Username, User, Password, Database string
	Role                               health.Role

	// Name and Type are for dns: the name asked for ("" is the root) and
	// the record type.
	Name string
	Type uint16
}

// healthKinds lists, for each key of a health table past the common ones,
// the kinds it applies to.
var healthKinds = map[string][]CheckKind{
	"send":          {CheckSendExpect, CheckUDPSendExpect},
	"expect":        {CheckSendExpect, CheckUDPSendExpect},
	"expect_regex":  {CheckSendExpect, CheckUDPSendExpect},
	"method":        {CheckHTTP, CheckHTTPS},
	"path":          {CheckHTTP, CheckHTTPS},
	"host":          {CheckHTTP, CheckHTTPS},
	"status":        {CheckHTTP, CheckHTTPS},
	"body":          {CheckHTTP, CheckHTTPS},
	"sni":           {CheckHTTPS, CheckTLS},
	"verify":        {CheckHTTPS, CheckTLS},
	"ca_file":       {CheckHTTPS, CheckTLS},
	"username":      {CheckRedis},
	"user":          {CheckPostgres, CheckMySQL},
	"password":      {CheckRedis, CheckPostgres, CheckMySQL},
	"password_file": {CheckRedis, CheckPostgres, CheckMySQL},
	"database":      {CheckPostgres, CheckMySQL},
	"role":          {CheckRedis, CheckPostgres, CheckMySQL},
	"name":          {CheckDNS},
	"type":          {CheckDNS},
}

var healthCommonKeys = []string{"kind", "interval", "timeout", "jitter", "rise", "fall", "port"}

// healthKeys returns every key a health table may hold, in the order
// errors list them; a backend's table may also hold address.
func healthKeys(backend bool) []string {
	keys := slices.Clone(healthCommonKeys)
	if backend {
		keys = append(keys, "address")
	}
	for _, k := range []string{"send", "expect", "expect_regex", "method", "path", "host", "status", "body",
		"sni", "verify", "ca_file", "username", "user", "password", "password_file", "database", "role", "name", "type"} {
		keys = append(keys, k)
	}
	return keys
}

// poolHealth reads the pool keys of health checking and the pool's
// [health] table, if any.
func (t *table) poolHealth(p *Pool) {
	t.text("on_down", &p.OnDown)
	t.duration("slow_start", &p.SlowStart, false)
	t.integer("passive_failures", 0, maxPassiveFailures, &p.PassiveFailures)
	t.duration("passive_backoff", &p.PassiveBackoff, true)
	if !t.has("health") {
		return
	}
	if t.has("passive_backoff") {
		// With active checks an ejection ends when rise checks have
		// passed since it began (HAProxy's on-error mark-down), so the
		// backoff would never be read: refused like any key that does
		// not apply, rather than silently ignored.
		t.errorf("passive_backoff", "applies only to pools without [%s.health]: with active checks an ejection ends after rise passing checks; remove passive_backoff", t.path)
	}
	ht := t.table("health")
	if ht == nil {
		return
	}
	h := defaultHealth()
	ht.allow(healthKeys(false)...)
	ht.text("kind", &h.Kind)
	ht.healthValues(&h)
	p.Health = &h
}

// healthValues reads the keys of health table t other than kind onto h,
// whose Kind is set, reporting keys that do not apply to it.
func (t *table) healthValues(h *Health) {
	for _, k := range sortedKeys(t.keys) {
		if kinds, ok := healthKinds[k]; ok && !slices.Contains(kinds, h.Kind) {
			names := make([]string, len(kinds))
			for i, kind := range kinds {
				names[i] = kind.String()
			}
			t.errorf(k, "applies only to kind = %s, not %q", strings.Join(names, " or "), h.Kind)
		}
	}
	t.duration("interval", &h.Interval, true)
	t.duration("timeout", &h.Timeout, true)
	if !t.has("jitter") && t.has("interval") {
		h.Jitter = defaultJitter(h.Interval)
	}
	t.duration("jitter", &h.Jitter, false)
	t.integer("rise", 1, maxRiseFall, &h.Rise)
	t.integer("fall", 1, maxRiseFall, &h.Fall)
	port := int(h.Port)
	if t.integer("port", 0, 65535, &port) {
		h.Port = uint16(port)
	}
	switch {
	case h.Timeout > h.Interval && (t.has("timeout") || t.has("interval")):
		t.errorf(timeOrInterval(t), "timeout %v is longer than the interval %v", h.Timeout, h.Interval)
	case h.Jitter > h.Interval/2 && (t.has("jitter") || t.has("interval")):
		t.errorf(jitterOrInterval(t), "jitter %v is more than half the interval %v", h.Jitter, h.Interval)
	}
	t.checkValues(h)
}

func timeOrInterval(t *table) string {
	if t.has("timeout") {
		return "timeout"
	}
	return "interval"
}

func jitterOrInterval(t *table) string {
	if t.has("jitter") {
		return "jitter"
	}
	return "interval"
}
