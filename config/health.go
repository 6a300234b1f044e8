package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"sluice/health"
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
		return fmt.Errorf("unknown on_down %q: want \"keep\" or \"close\"", text)
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
		return fmt.Errorf("unknown kind %q: want %s", text, strings.Join(checkKindNames[:], ", "))
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

// checkValues reads the keys of one kind of check. Those that do not
// apply were reported by healthValues; they are not read.
func (t *table) checkValues(h *Health) {
	has := func(k string) bool { return t.has(k) && slices.Contains(healthKinds[k], h.Kind) }
	str := func(k string, dst *string) bool {
		if !has(k) {
			return false
		}
		s, ok := t.str(k)
		if ok {
			*dst = s
		}
		return ok
	}
	str("send", &h.Send)
	str("expect", &h.Expect)
	var re string
	if str("expect_regex", &re) {
		compiled, err := regexp.Compile(re)
		if err != nil {
			t.errorf("expect_regex", "%v", err)
		}
		h.ExpectRegex = compiled
	}
	t.httpValues(h, str)
	t.tlsValues(h, str)
	t.dbValues(h, str)
	str("name", &h.Name)
	var typ string
	if str("type", &typ) {
		n, err := health.ParseDNSType(typ)
		if err != nil {
			t.errorf("type", "%v", err)
		}
		h.Type = n
	}
}

// httpMethodRE is an HTTP method as RFC 9110 section 9.1 allows, in the
// upper case every server expects.
var httpMethodRE = regexp.MustCompile(`^[A-Z]{1,20}$`)

func (t *table) httpValues(h *Health, str func(string, *string) bool) {
	if str("method", &h.Method) && !httpMethodRE.MatchString(h.Method) {
		t.errorf("method", "invalid method %q: want upper-case letters, such as GET or HEAD", h.Method)
	}
	if str("path", &h.Path) && (!strings.HasPrefix(h.Path, "/") || strings.ContainsAny(h.Path, " \r\n")) {
		t.errorf("path", "invalid path %q: want one starting with /, without spaces", h.Path)
	}
	if str("host", &h.Host) && (h.Host == "" || strings.ContainsAny(h.Host, " \r\n/")) {
		t.errorf("host", "invalid host %q", h.Host)
	}
	var status string
	if str("status", &status) {
		lo, hi, err := parseStatus(status)
		if err != nil {
			t.errorf("status", "%v", err)
		}
		h.StatusMin, h.StatusMax = lo, hi
	}
	str("body", &h.Body)
}

// parseStatus reads "200" or "200-399".
func parseStatus(s string) (lo, hi int, err error) {
	a, b, rng := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(a)
	hi, err2 := lo, error(nil)
	if rng {
		hi, err2 = strconv.Atoi(b)
	}
	if err1 != nil || err2 != nil || lo < 100 || hi > 599 || lo > hi {
		return 0, 0, fmt.Errorf("invalid status %q: want a code or a range of codes 100..599, such as \"200\" or \"200-399\"", s)
	}
	return lo, hi, nil
}

func (t *table) tlsValues(h *Health, str func(string, *string) bool) {
	str("sni", &h.SNI)
	if slices.Contains(healthKinds["verify"], h.Kind) {
		t.boolean("verify", &h.Verify)
	}
	if str("ca_file", &h.CAFile) {
		h.CAFile = t.d.path(h.CAFile)
		if _, err := health.LoadCAFile(h.CAFile); err != nil {
			t.errorf("ca_file", "%v", err)
		}
		if !h.Verify {
			t.errorf("ca_file", "is used only with verify = true")
		}
	}
}

func (t *table) dbValues(h *Health, str func(string, *string) bool) {
	str("username", &h.Username)
	str("user", &h.User)
	str("database", &h.Database)
	if str("password", &h.Password) && t.has("password_file") {
		t.errorf("password_file", "give password or password_file, not both")
	}
	var file string
	if str("password_file", &file) && !t.has("password") {
		pw, err := readSecret(t.d.path(file))
		if err != nil {
			t.errorf("password_file", "%v", err)
		}
		h.Password = pw
	}
	if has := slices.Contains(healthKinds["role"], h.Kind); has && t.has("role") {
		t.text("role", &h.Role)
	}
	switch {
	case h.Kind == CheckRedis && h.Username != "" && h.Password == "" && (t.has("username") || t.has("password")):
		t.errorf("username", "needs a password: AUTH takes both")
	case h.Kind == CheckMySQL && h.User == "" && (h.Password != "" || h.Role != health.RoleAny) &&
		(t.has("password") || t.has("password_file") || t.has("role")):
		t.errorf(firstOf(t, "role", "password", "password_file"), "needs user: mysql checks log in only with a user")
	}
}

func firstOf(t *table, keys ...string) string {
	for _, k := range keys {
		if t.has(k) {
			return k
		}
	}
	return keys[0]
}

// boolean sets *dst from k's boolean value.
func (t *table) boolean(k string, dst *bool) {
	v, ok := t.value(k)
	if !ok {
		return
	}
	b, ok := v.(bool)
	if !ok {
		t.errorf(k, "must be true or false, not %s", typeName(v))
		return
	}
	*dst = b
}

// backendHealth reads the keys of backend entry t that health checking
// adds, and its [health] override table, if any; lines finds the override's
// key lines. b.Address is set if valid.
func (d *decoder) backendHealth(t *table, lines *entryLines, i int, ph *Health, b *Backend) {
	t.boolean("backup", &b.Backup)
	t.text("state", &b.State)
	if ph != nil {
		h := *ph
		b.Health = &h
	}
	if !t.has("health") {
		d.checkAddress(b, netip.AddrPort{})
		return
	}
	v, _ := t.value("health")
	var keys map[string]toml.Primitive
	if _, isMap := v.(map[string]any); !isMap || d.md.PrimitiveDecode(t.keys["health"], &keys) != nil {
		t.errorf("health", "must be a table, not %s", typeName(v))
		return
	}
	if ph == nil {
		t.errorf("health", "overrides nothing: the pool has no [%s.health] table", strings.TrimSuffix(t.path, fmt.Sprintf(".backends[%d]", i)))
		return
	}
	ht := &table{d: d, name: "health", path: t.key("health"), keys: keys, line: lines.key(i, "health"),
		lineOf: func(k string) int { return lines.subKey(i, "health", k) }}
	ht.allow(healthKeys(true)...)
	if ht.has("kind") {
		ht.errorf("kind", "cannot be set per backend: a pool's backends are checked alike")
	}
	if ht.has("address") && ht.has("port") {
		ht.errorf("port", "give address or port, not both")
	}
	ht.healthValues(b.Health)
	var override netip.AddrPort
	if s, ok := ht.str("address"); ok {
		a, err := parseAddrPort(s, false)
		if err != nil {
			ht.errorf("address", "%v", err)
		}
		override = a
	}
	d.checkAddress(b, override)
}

// checkAddress sets where b is checked: override if valid, else its
// address with the check's port.
func (d *decoder) checkAddress(b *Backend, override netip.AddrPort) {
	switch {
	case b.Health == nil:
	case override.IsValid():
		b.Health.Address = override
	case b.Address.IsValid() && b.Health.Port != 0:
		b.Health.Address = netip.AddrPortFrom(b.Address.Addr(), b.Health.Port)
	default:
		b.Health.Address = b.Address
	}
}

// subKey returns the line of key k in the sub-table sub of entry i (such
// as [pools.db.backends.health]), or 0 when it cannot be known, as key does
// for the entry's own keys.
func (e *entryLines) subKey(i int, sub, k string) int {
	p, ok := subPrim(&e.d.md, e.entries[i], sub, k)
	if !ok {
		return e.key(i, sub)
	}
	later := false
	for _, m := range e.entries[i+1:] {
		if _, ok := subPrim(&e.d.md, m, sub, k); ok {
			later = true
		}
	}
	if !later {
		return probeLine(&e.d.md, p, e.d.text)
	}
	c, ok := e.cut(i)
	if !ok {
		return 0
	}
	if p, ok = subPrim(c.md, c.entries[i], sub, k); !ok {
		return 0
	}
	return probeLine(c.md, p, e.d.text)
}

// subPrim returns entry[sub][k].
func subPrim(md *toml.MetaData, entry map[string]toml.Primitive, sub, k string) (toml.Primitive, bool) {
	p, ok := entry[sub]
	if !ok {
		return toml.Primitive{}, false
	}
	var m map[string]toml.Primitive
	if md.PrimitiveDecode(p, &m) != nil {
		return toml.Primitive{}, false
	}
	v, ok := m[k]
	return v, ok
}

// readSecret reads a password file, without its final line break.
func readSecret(path string) (string, error) {
	b, err := health.ReadSmallFile(path, maxSecretSize)
	if err != nil {
		return "", fmt.Errorf("reading password file: %w", err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("password file %s is empty", path)
	}
	return s, nil
}

// path resolves a file named in the configuration: relative to the
// configuration file's directory, so that sluice reads the same file
// whatever its working directory.
func (d *decoder) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(d.file), p)
}
