package config

import (
	"encoding"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"sluice/internal/access"
)

// Load reads the file at path and parses it with Parse.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(path, data)
}

// Parse parses a configuration file's contents; file names it in errors
// and in Config.File. On failure the error is an Errors holding every
// problem found, each with its key path and, where known, its line; only a
// TOML syntax error stops the parse early. Bind templates are resolved
// against this host's interfaces.
func Parse(file string, data []byte) (*Config, error) {
	return parseWith(file, data, localHost)
}

// parseWith is Parse with the host's interfaces supplied by host, which is
// called at most once and only if a bind is a template.
func parseWith(file string, data []byte, host func() (hostAddrs, error)) (*Config, error) {
	d := &decoder{file: file, text: trimBOM(string(data)), host: host, sendsV1: map[string]bool{}}
	cfg := d.config()
	if len(d.errs) > 0 {
		d.errs.sort()
		return nil, d.errs
	}
	d.warnings.sort()
	cfg.Warnings = d.warnings
	return cfg, nil
}

// decoder reads one file, collecting every error it finds.
type decoder struct {
	file string
	text string
	md   toml.MetaData
	root *keyNode // the file's keys and their lines; nil if unknown
	errs Errors
	// parsed are the pools, read before the listeners, whose HTTP routes
	// may depend on a pool's balance.
	parsed []Pool
	// warnings are problems that do not stop sluice (see Config.Warnings).
	warnings Errors

	cacheNames []string // the [caches] tables, sorted, which routes may name

	sendsV1 map[string]bool // pools with send_proxy = "v1", for UDP listeners' checks
	hasBGP  bool            // a [bgp] table, for listeners' announce

	drainRate  access.Rate   // the file's drain_rate, every pool's default
	drainRates []drainRateAt // pools that set their own

	host    func() (hostAddrs, error)
	hostErr error
	hosts   *hostAddrs // set once host has been called
}

func (d *decoder) errorf(line int, key, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Key: key, Msg: clipMsg(fmt.Sprintf(format, args...))})
}

// hostAddrs calls d.host once.
func (d *decoder) hostAddrs() (hostAddrs, error) {
	if d.hosts == nil {
		h, err := d.host()
		d.hosts, d.hostErr = &h, err
	}
	return *d.hosts, d.hostErr
}

// config decodes the file into plain values. The TOML is decoded only
// into Primitives and leaves of type any, and every type and value check is
// ours, so no check stops the others and each knows its key's line.
func (d *decoder) config() *Config {
	var top map[string]toml.Primitive
	md, err := toml.Decode(d.text, &top)
	if err != nil {
		line := 0
		if pe := (toml.ParseError{}); errors.As(err, &pe) {
			line, err = pe.Position.Line, errors.New(pe.Message)
		}
		d.errorf(line, "", "invalid toml: %v", err)
		return nil
	}
	d.md = md
	d.root = scanLines(d.text, md.Keys())
	cfg := defaultConfig(d.file)
	t := &table{d: d, keys: top, node: d.root}
	t.allow("drain_timeout", "drain_rate", "pid_file", "log", "listeners", "pools", "caches", "admin", "bgp")
	t.duration("drain_timeout", &cfg.DrainTimeout, false)
	t.drainRate("drain_rate", &cfg.DrainRate)
	d.drainRate = cfg.DrainRate
	if s, ok := t.str("pid_file"); ok {
		if s == "" {
			t.errorf("pid_file", "must not be empty")
		}
		cfg.PIDFile = s
	}
	if lt := t.table("log"); lt != nil {
		lt.allow("format", "level", "http_format")
		lt.text("format", &cfg.Log.Format)
		lt.text("http_format", &cfg.Log.HTTPFormat)
		lt.level("level", &cfg.Log.Level)
	}
	cfg.Pools = d.pools(t)
	d.parsed = cfg.Pools
	cfg.Caches = d.caches(t)
	d.cacheNames = cacheNames(cfg.Caches)
	cfg.Admin = d.admin(t)
	cfg.BGP = d.bgp(t)
	d.hasBGP = cfg.BGP != nil
	var pools map[string]any
	if v, ok := t.value("pools"); ok {
		pools, _ = v.(map[string]any)
	}
	cfg.Listeners = d.listeners(t, sortedKeys(pools))
	acmeHTTP01(cfg.Listeners)
	d.unpacedDrainRates(cfg.Listeners)
	d.bgpWarnings(t, cfg)
	return cfg
}

// table is one TOML table being read.
type table struct {
	d    *decoder
	name string // last key of path, as written
	path string // key path for errors; "" at the top
	keys map[string]toml.Primitive
	node *keyNode // where the table and its keys are; nil if unknown
}

// key returns the key path of k in t.
func (t *table) key(k string) string { return joinKey(t.path, k) }

// joinKey appends a key to a path, quoting it as TOML would if needed and
// shortening it if it is long (see clip).
func joinKey(path, k string) string {
	k = clip(toml.Key{k}.String())
	if path == "" {
		return k
	}
	return path + "." + k
}

// errorf reports a problem with key k, at its line or else the table's.
func (t *table) errorf(k, format string, args ...any) {
	line := t.node.lineNo()
	if _, ok := t.keys[k]; ok {
		line = t.node.key(k).lineNo()
	}
	t.d.errorf(line, t.key(k), format, args...)
}

func (t *table) has(k string) bool { _, ok := t.keys[k]; return ok }

// value returns k's value as the library decodes it into any.
func (t *table) value(k string) (any, bool) {
	p, ok := t.keys[k]
	if !ok {
		return nil, false
	}
	var v any
	if err := t.d.md.PrimitiveDecode(p, &v); err != nil {
		t.errorf(k, "%v", err)
		return nil, false
	}
	return v, true
}

// allow reports every key of t not among allowed.
func (t *table) allow(allowed ...string) {
	for _, k := range sortedKeys(t.keys) {
		if !slices.Contains(allowed, k) {
			t.errorf(k, "unknown key; allowed here: %s", strings.Join(allowed, ", "))
		}
	}
}

// required reports each of keys missing from t.
func (t *table) required(keys ...string) {
	for _, k := range keys {
		if !t.has(k) {
			t.errorf(k, "required key is missing")
		}
	}
}

// str returns k's string value; ok is false if k is absent or not a string.
func (t *table) str(k string) (s string, ok bool) {
	v, ok := t.value(k)
	if !ok {
		return "", false
	}
	if s, ok = v.(string); !ok {
		t.errorf(k, "must be a string, not %s", typeName(v))
	}
	return s, ok
}

// text sets *u from k's string value; it reports whether k was valid.
func (t *table) text(k string, u encoding.TextUnmarshaler) bool {
	s, ok := t.str(k)
	if !ok {
		return false
	}
	if err := u.UnmarshalText([]byte(s)); err != nil {
		t.errorf(k, "%v", err)
		return false
	}
	return true
}

// integer sets *dst from k's integer value if it is in lo..hi; it reports
// whether k was valid.
func (t *table) integer(k string, lo, hi int, dst *int) bool {
	v, ok := t.value(k)
	if !ok {
		return false
	}
	n, ok := v.(int64)
	switch {
	case !ok:
		t.errorf(k, "must be an integer, not %s", typeName(v))
	case n < int64(lo) || n > int64(hi):
		t.errorf(k, "must be %d..%d, not %d", lo, hi, n)
		ok = false
	default:
		*dst = int(n)
	}
	return ok
}

// durationRE is the syntax time.ParseDuration accepts: numbers with units,
// such as 1h30m or 1.5s.
var durationRE = regexp.MustCompile(`^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$`)

// duration sets *dst from k's duration string, which must be > 0 if
// positive and >= 0 otherwise.
func (t *table) duration(k string, dst *time.Duration, positive bool) {
	v, ok := t.value(k)
	if !ok {
		return
	}
	s, ok := v.(string)
	if !ok {
		// The library would read a bare 30 as 30 ns; refuse to guess.
		t.errorf(k, "must be a string with a unit, such as \"30s\", not %s", typeName(v))
		return
	}
	dur, err := time.ParseDuration(s)
	switch {
	case err != nil && durationRE.MatchString(s):
		// time.ParseDuration has one error for both; this one is well
		// formed, so it overflowed.
		t.errorf(k, "%s is out of range: the longest duration is %v (about 292 years)", quote(s), time.Duration(math.MaxInt64))
	case err != nil:
		t.errorf(k, "invalid duration %s: want a number and a unit (ns, us, ms, s, m, h), such as \"30s\"", quote(s))
	case dur < 0:
		t.errorf(k, "must not be negative, not %s", clip(s))
	case dur == 0 && positive:
		t.errorf(k, "must be greater than zero")
	default:
		*dst = dur
	}
}

// table returns the table at k, or nil if k is absent or not a table.
func (t *table) table(k string) *table {
	v, ok := t.value(k)
	if !ok {
		return nil
	}
	var keys map[string]toml.Primitive
	if _, isMap := v.(map[string]any); !isMap || t.d.md.PrimitiveDecode(t.keys[k], &keys) != nil {
		t.errorf(k, "must be a table, not %s", typeName(v))
		return nil
	}
	return &table{d: t.d, name: k, path: t.key(k), keys: keys, node: t.node.key(k)}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// typeName names a decoded TOML value's type for errors.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case map[string]any:
		return "a table"
	case []map[string]any, []any:
		return "an array"
	}
	return "a date or time"
}
