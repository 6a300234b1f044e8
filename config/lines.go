package config

import (
	"errors"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// keyNode is where one table, key or array entry is defined in the file:
// the tree of a file's keys with their lines, which the TOML library keeps
// to itself. The library can be asked for one key's line at a time (an
// UnmarshalTOML error carries it), but each answer costs a copy and a
// split of the whole file, so a file with many errors took time quadratic
// in its size (issue 8); the tree is built in one pass.
type keyNode struct {
	// line is the 1-based line of the key, of a table's [header] (of the
	// first line naming it if it has none), or of an array's first entry.
	line int
	// explicit is set once a [header] or a key = value has defined it;
	// until then line is where a dotted key or header first implied it.
	explicit bool
	keys     map[string]*keyNode
	// elems are the entries of an array: [[header]] tables, or the values
	// of an inline array in order.
	elems []*keyNode
}

// key returns the node of key k in table n; nil if n is nil or has no k.
func (n *keyNode) key(k string) *keyNode {
	if n == nil {
		return nil
	}
	return n.keys[k]
}

// elem returns entry i of array n, or nil.
func (n *keyNode) elem(i int) *keyNode {
	if n == nil || i < 0 || i >= len(n.elems) {
		return nil
	}
	return n.elems[i]
}

// lineNo returns n's line, or 0 for a nil n.
func (n *keyNode) lineNo() int {
	if n == nil {
		return 0
	}
	return n.line
}

// child returns key k of n, adding it at line if it is new; explicit says
// that this line defines it rather than implies it.
func (n *keyNode) child(k string, line int, explicit bool) *keyNode {
	c := n.keys[k]
	if c == nil {
		if n.keys == nil {
			n.keys = map[string]*keyNode{}
		}
		c = &keyNode{line: line}
		n.keys[k] = c
	}
	if explicit && !c.explicit {
		c.line, c.explicit = line, true
	}
	return c
}

// lastEntry returns the table a [header] below n continues: the last
// entry if n is an array of tables, else n.
func (n *keyNode) lastEntry() *keyNode {
	if len(n.elems) > 0 {
		return n.elems[len(n.elems)-1]
	}
	return n
}

// scanLines reads the lines of every key in text, which the TOML library
// has parsed without error into keys (its MetaData.Keys, in file order).
// It lexes only as far as it must to find keys; to be sure it read the
// file as the library did, the key paths it finds must be keys exactly,
// in order. If they are not, it returns nil: lines then are unknown (0),
// never wrong.
func scanLines(text string, keys []toml.Key) (root *keyNode) {
	s := &lineScanner{text: text, line: 1, want: keys, root: &keyNode{}}
	defer func() {
		if r := recover(); r != nil {
			if r != errLost {
				panic(r)
			}
			root = nil
		}
	}()
	s.file()
	if s.matched != len(keys) {
		return nil
	}
	return s.root
}

// errLost is what lineScanner panics with when the text is not what it
// expects, to unwind from any depth of nested values at once.
var errLost = errors.New("config: lost while scanning for key lines")

type lineScanner struct {
	text    string
	i       int // offset of the next byte
	line    int // line of text[i]
	root    *keyNode
	want    []toml.Key
	matched int // how many of want have been seen
}

func (s *lineScanner) peek(off int) byte {
	if s.i+off < len(s.text) {
		return s.text[s.i+off]
	}
	return 0
}

// lost abandons the scan.
func (s *lineScanner) lost() { panic(errLost) }

// seen checks that the next key the library saw is path.
func (s *lineScanner) seen(path []string) {
	if s.matched >= len(s.want) || !slices.Equal(s.want[s.matched], path) {
		s.lost()
	}
	s.matched++
}

// file reads the top level: [headers] and key = value lines.
func (s *lineScanner) file() {
	table, path := s.root, []string(nil)
	for s.blank(); s.i < len(s.text); s.blank() {
		if s.peek(0) != '[' {
			s.keyValue(table, path)
			continue
		}
		line, array := s.line, s.peek(1) == '['
		s.i++
		if array {
			s.i++
		}
		path = s.keyPath()
		s.expect(']')
		if array {
			s.expect(']')
		}
		table = s.header(path, line, array)
		s.seen(path)
	}
}

// header returns the table a [path] or [[path]] header at line starts.
func (s *lineScanner) header(path []string, line int, array bool) *keyNode {
	n := s.root
	for _, k := range path[:len(path)-1] {
		n = n.child(k, line, false).lastEntry()
	}
	last := path[len(path)-1]
	if !array {
		return n.child(last, line, true)
	}
	arr := n.child(last, line, true)
	entry := &keyNode{line: line, explicit: true}
	arr.elems = append(arr.elems, entry)
	return entry
}

// keyValue reads key = value in table (at key path path), at the top
// level or inside an inline table.
func (s *lineScanner) keyValue(table *keyNode, path []string) {
	line := s.line
	keys := s.keyPath()
	s.expect('=')
	n := table
	for _, k := range keys[:len(keys)-1] {
		n = n.child(k, line, false)
	}
	n = n.child(keys[len(keys)-1], line, true)
	full := slices.Concat(path, keys)
	s.seen(full)
	s.blank()
	s.value(n, full)
}

// value skips a value, recording the keys of inline tables in it; n is
// the value's node and path its key.
func (s *lineScanner) value(n *keyNode, path []string) {
	switch s.peek(0) {
	case '"', '\'':
		s.str()
	case '[':
		s.i++
		for s.blank(); s.peek(0) != ']'; s.blank() {
			if s.peek(0) == ',' {
				s.i++
				continue
			}
			e := &keyNode{line: s.line, explicit: true}
			n.elems = append(n.elems, e)
			s.value(e, path)
		}
		s.i++
	case '{':
		s.i++
		for s.blank(); s.peek(0) != '}'; s.blank() {
			if s.peek(0) == ',' {
				s.i++
				continue
			}
			s.keyValue(n, path)
		}
		s.i++
	default:
		s.scalar()
	}
}

// scalar skips a number, boolean or date.
func (s *lineScanner) scalar() {
	start := s.i
	for s.i < len(s.text) && !strings.ContainsRune(" \t\r\n,]}#", rune(s.text[s.i])) {
		s.i++
	}
	// A date and a time may be separated by a space (RFC 3339, TOML 1.0).
	if s.i-start == len("2006-01-02") && s.text[start+4] == '-' && s.peek(0) == ' ' && isDigit(s.peek(1)) {
		s.i++
		s.scalar()
	}
	if s.i == start {
		s.lost() // no progress: not a value
	}
}

// keyPath reads a possibly dotted key, up to the = or ] after it.
func (s *lineScanner) keyPath() []string {
	var keys []string
	for {
		s.spaces()
		keys = append(keys, s.simpleKey())
		s.spaces()
		if s.peek(0) != '.' {
			return keys
		}
		s.i++
	}
}

// simpleKey reads a bare or quoted key.
func (s *lineScanner) simpleKey() string {
	start := s.i
	switch s.peek(0) {
	case '"', '\'':
		s.str()
		raw := s.text[start:s.i]
		if raw[0] == '\'' || !strings.Contains(raw, `\`) {
			return raw[1 : len(raw)-1]
		}
		// Escapes are rare in keys; the library decodes them as it did.
		var m map[string]string
		if _, err := toml.Decode("k = "+raw, &m); err != nil {
			s.lost()
		}
		return m["k"]
	}
	for s.i < len(s.text) && isBareKeyByte(s.text[s.i]) {
		s.i++
	}
	if s.i == start {
		s.lost()
	}
	return s.text[start:s.i]
}

// str skips a string of any of the four kinds, counting its lines.
func (s *lineScanner) str() {
	q := s.peek(0)
	if s.peek(1) == q && s.peek(2) == q {
		s.i += 3
		for s.i < len(s.text) {
			c := s.text[s.i]
			switch {
			case c == '\\' && q == '"':
				s.i++ // the escaped byte, which may be a newline
				if s.peek(0) == '\n' {
					s.line++
				}
			case c == '\n':
				s.line++
			case c == q && s.peek(1) == q && s.peek(2) == q:
				// Up to two quotes may end the content just before the
				// closing three.
				n := 3
				for n < 5 && s.peek(n) == q {
					n++
				}
				s.i += n
				return
			}
			s.i++
		}
		s.lost()
	}
	for s.i++; s.i < len(s.text); s.i++ {
		switch s.text[s.i] {
		case '\\':
			if q == '"' {
				s.i++
			}
		case q:
			s.i++
			return
		case '\n':
			s.lost()
		}
	}
	s.lost()
}

// spaces skips spaces and tabs.
func (s *lineScanner) spaces() {
	for c := s.peek(0); c == ' ' || c == '\t'; c = s.peek(0) {
		s.i++
	}
}

// blank skips white space, newlines and comments.
func (s *lineScanner) blank() {
	for s.i < len(s.text) {
		switch s.text[s.i] {
		case ' ', '\t', '\r':
		case '\n':
			s.line++
		case '#':
			for s.i < len(s.text) && s.text[s.i] != '\n' {
				s.i++
			}
			continue
		default:
			return
		}
		s.i++
	}
}

// expect skips spaces and c.
func (s *lineScanner) expect(c byte) {
	s.spaces()
	if s.peek(0) != c {
		s.lost()
	}
	s.i++
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isBareKeyByte(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || isDigit(c) || c == '_' || c == '-'
}

// trimBOM drops a byte order mark as the TOML library does before it
// parses, so that lines we count are the library's.
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
