package config

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Error is one problem found in a configuration file.
type Error struct {
	// File is the path or name the configuration was parsed from.
	File string
	// Line is the 1-based line of the offending key, or 0 if unknown.
	Line int
	// Key is the offending key's path, such as
	// pools.db.backends[2].address (entries counted from 0); empty for a
	// TOML syntax error.
	Key string
	// Msg says what is wrong, in lower case.
	Msg string
}

// Error returns "file:line: key: msg", leaving out the line when it is
// unknown and the key when it is empty.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one configuration file, sorted by line
// then key.
type Errors []*Error

// MaxReported is how many errors Errors.Error lists before it counts the
// rest: as with a compiler, the first hundred say what is wrong, and a
// generated file with a million mistakes still gives a readable report.
const MaxReported = 100

// Error returns the errors one per line, the first MaxReported of them,
// then "and N more errors" if there are more.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es[:min(len(es), MaxReported)] {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	if n := len(es) - MaxReported; n > 0 {
		fmt.Fprintf(&b, "\n%s: and %d more %s", es[0].File, n, plural(n, "error", "errors"))
	}
	return b.String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Unwrap returns each *Error, for errors.As and errors.Is.
func (es Errors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

func (es Errors) sort() {
	slices.SortStableFunc(es, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), strings.Compare(a.Key, b.Key))
	})
}

// maxShown is how many bytes of a name or value from the file an error
// shows: enough to recognise it, while a 1 MB value in the file does not
// make a 1 MB message.
const maxShown = 80

// clip shortens a name or value from the file for an error: its first
// maxShown bytes (cut at a character boundary), "..." and its length.
func clip(s string) string {
	if len(s) <= maxShown {
		return s
	}
	return fmt.Sprintf("%s...(%d bytes)", s[:cutAt(s, maxShown)], len(s))
}

// quote is %q of a value from the file, shortened as clip does.
func quote(s string) string {
	if len(s) <= maxShown {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%q...(%d bytes)", s[:cutAt(s, maxShown)], len(s))
}

// maxMsg bounds a whole message, which may hold values that other
// packages (regexp, text/template) echo in their errors. It is well above
// any message of ours: the longest, a list of allowed keys, is about 250
// bytes.
const maxMsg = 1024

// clipMsg shortens a message longer than maxMsg by eliding its middle,
// keeping what was wrong, at the start, and what is wanted, at the end.
func clipMsg(msg string) string {
	if len(msg) <= maxMsg {
		return msg
	}
	head := cutAt(msg, maxMsg/2)
	tail := len(msg) - maxMsg/2
	for tail < len(msg) && !utf8.RuneStart(msg[tail]) {
		tail++
	}
	return fmt.Sprintf("%s...(%d bytes)...%s", msg[:head], tail-head, msg[tail:])
}

// cutAt returns n, moved back to the start of the character it splits.
func cutAt(s string, n int) int {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return n
}
