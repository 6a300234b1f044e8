package config

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"sluice/health"
)

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
		t.errorf("method", "invalid method %s: want upper-case letters, such as GET or HEAD", quote(h.Method))
	}
	if str("path", &h.Path) && (!strings.HasPrefix(h.Path, "/") || strings.ContainsAny(h.Path, " \r\n")) {
		t.errorf("path", "invalid path %s: want one starting with /, without spaces", quote(h.Path))
	}
	if str("host", &h.Host) && (h.Host == "" || strings.ContainsAny(h.Host, " \r\n/")) {
		t.errorf("host", "invalid host %s", quote(h.Host))
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
		return 0, 0, fmt.Errorf("invalid status %s: want a code or a range of codes 100..599, such as \"200\" or \"200-399\"", quote(s))
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
	case h.Kind == CheckPostgres && h.User == "" && (h.Password != "" || h.Role != health.RoleAny) &&
		(t.has("password") || t.has("password_file") || t.has("role")):
		// With a password or a role the check logs in, and "sluice", the
		// default that suits the startup exchange (any refusal shows a
		// live server), is rarely a role the server lets in: such a check
		// would stay down for good (issue 8).
		t.errorf(firstOf(t, "role", "password", "password_file"),
			"needs user: a postgres check with password or role logs in; add user = the role it logs in as")
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
