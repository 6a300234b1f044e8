package config

import (
	"errors"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// errProbe is what lineProbe returns. The TOML library has no public way
// to give a key's position, but it wraps an error from a value's
// UnmarshalTOML in a ParseError holding the line of the key being decoded.
var errProbe = errors.New("config: line probe")

type lineProbe struct{}

func (*lineProbe) UnmarshalTOML(any) error { return errProbe }

// probeLine returns the line of the key p was decoded from, or 0 if the
// library does not know it (an implicit table such as [pools] when only
// [pools.db] is written). text is what md was parsed from.
func probeLine(md *toml.MetaData, p toml.Primitive, text string) int {
	var pe toml.ParseError
	if !errors.As(md.PrimitiveDecode(p, &lineProbe{}), &pe) || pe.Message != errProbe.Error() {
		return 0
	}
	// The library's Line for a multi-line string is the line it ends on;
	// its Start offset is just inside the opening quotes, on the key's line.
	pos := pe.Position
	if pos.Line <= 0 || pos.Start < 0 || pos.Start > len(text) {
		return 0
	}
	if line := 1 + strings.Count(text[:pos.Start], "\n"); line <= pos.Line {
		return line
	}
	return 0
}

// trimBOM drops a byte order mark as the TOML library does before it
// parses, so that offsets it reports index the text we keep.
func trimBOM(text string) string {
	for _, bom := range []string{"\xff\xfe", "\xfe\xff", "\xef\xbb\xbf"} {
		if strings.HasPrefix(text, bom) {
			return text[len(bom):]
		}
	}
	return text
}

// tableArray decodes an array of tables, written [[a.b]] or inline; ok is
// false for any other value.
func tableArray(md *toml.MetaData, p toml.Primitive) (entries []map[string]toml.Primitive, ok bool) {
	var v any
	if md.PrimitiveDecode(p, &v) != nil {
		return nil, false
	}
	switch v := v.(type) {
	case []map[string]any:
	case []any:
		for _, e := range v {
			if _, ok := e.(map[string]any); !ok {
				return nil, false
			}
		}
	default:
		return nil, false
	}
	return entries, md.PrimitiveDecode(p, &entries) == nil
}

// entryLines finds the lines of keys inside the entries of one array of
// tables. The library keeps one position per key path, that of the last
// entry defining it. When a later entry redefines a key of entry i, the
// file is parsed again cut just before entry i+1's [[header]], where entry
// i is the last. Headers are trusted only if
// exactly one line per entry parses as this array's header, and a cut only
// if it parses and holds i+1 entries; otherwise lines are 0, never wrong.
type entryLines struct {
	d       *decoder
	path    []string // the array's key, such as pools, db, backends
	entries []map[string]toml.Primitive
	headers []int // line of each entry's header; nil if not trusted
	cuts    map[int]cut
}

// cut is the file parsed up to the end of one entry.
type cut struct {
	md      *toml.MetaData
	entries []map[string]toml.Primitive
}

func newEntryLines(d *decoder, path []string, arrayLine int, entries []map[string]toml.Primitive) *entryLines {
	e := &entryLines{d: d, path: path, entries: entries, cuts: map[int]cut{}}
	h := headerLines(d.text, path)
	// The library's line for the array itself is that of its last header.
	if len(h) == len(entries) && len(h) > 0 && h[len(h)-1] == arrayLine {
		e.headers = h
	}
	return e
}

// header returns the line of entry i's [[header]], or 0.
func (e *entryLines) header(i int) int {
	if e.headers == nil {
		return 0
	}
	return e.headers[i]
}

// key returns the line of key k in entry i, or of the entry's header if k
// is not there, or 0.
func (e *entryLines) key(i int, k string) int {
	p, ok := e.entries[i][k]
	if !ok {
		return e.header(i)
	}
	if !slices.ContainsFunc(e.entries[i+1:], func(m map[string]toml.Primitive) bool { _, ok := m[k]; return ok }) {
		// No later entry redefined k, so the library's line is entry i's.
		return probeLine(&e.d.md, p, e.d.text)
	}
	c, ok := e.cut(i)
	if !ok {
		return 0
	}
	return probeLine(c.md, c.entries[i][k], e.d.text)
}

// cut returns the file parsed up to the end of entry i, which is not the
// last.
func (e *entryLines) cut(i int) (cut, bool) {
	if e.headers == nil {
		return cut{}, false
	}
	if c, ok := e.cuts[i]; ok {
		return c, c.md != nil
	}
	var c cut
	prefix := e.d.text[:lineOffset(e.d.text, e.headers[i+1])]
	var top map[string]toml.Primitive
	if md, err := toml.Decode(prefix, &top); err == nil {
		if entries, ok := lookupArray(&md, top, e.path); ok && len(entries) == i+1 {
			c = cut{md: &md, entries: entries}
		}
	}
	e.cuts[i] = c
	return c, c.md != nil
}

// headerLines returns the lines that, parsed alone, are exactly the header
// [[path]]. A line inside a multi-line string may look like one; the
// caller's count check catches that.
func headerLines(text string, path []string) []int {
	var lines []int
	for n, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "[[") {
			continue
		}
		var top map[string]toml.Primitive
		md, err := toml.Decode(strings.TrimSpace(line), &top)
		if err != nil {
			continue
		}
		if entries, ok := lookupArray(&md, top, path); ok && len(entries) == 1 {
			lines = append(lines, n+1)
		}
	}
	return lines
}

// lookupArray finds the array of tables at path.
func lookupArray(md *toml.MetaData, top map[string]toml.Primitive, path []string) ([]map[string]toml.Primitive, bool) {
	m := top
	for _, k := range path[:len(path)-1] {
		var next map[string]toml.Primitive
		p, ok := m[k]
		if !ok || md.PrimitiveDecode(p, &next) != nil {
			return nil, false
		}
		m = next
	}
	p, ok := m[path[len(path)-1]]
	if !ok {
		return nil, false
	}
	return tableArray(md, p)
}

// lineOffset returns the byte offset at which 1-based line n starts.
func lineOffset(text string, n int) int {
	off := 0
	for ; n > 1; n-- {
		i := strings.IndexByte(text[off:], '\n')
		if i < 0 {
			return len(text)
		}
		off += i + 1
	}
	return off
}
