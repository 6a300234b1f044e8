package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
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
