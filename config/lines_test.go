package config

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// lineAt returns the line scanLines found for path, written as in errors
// (a.b[1].c, bare keys only), or -1 if it has no such node.
func lineAt(root *keyNode, path string) int {
	n := root
	for _, seg := range strings.Split(path, ".") {
		name, indexes, _ := strings.Cut(seg, "[")
		n = n.key(name)
		for index := range strings.SplitSeq(strings.TrimSuffix(indexes, "]"), "][") {
			if index != "" {
				i, _ := strconv.Atoi(index)
				n = n.elem(i)
			}
		}
		if n == nil {
			return -1
		}
	}
	return n.line
}

func TestScanLines(t *testing.T) {
	for _, tc := range []struct {
		name  string
		toml  string
		lines map[string]int
	}{
		{"keys and tables", "a = 1\n\n[t]\nb = 2 # c = 3\n[u.v]\nw = 'x'\n",
			map[string]int{"a": 1, "t": 3, "t.b": 4, "u": 5, "u.v": 5, "u.v.w": 6}},
		{"table implied by a dotted header", "[listeners.a]\nbind = 1\n\n[listeners.a.tls.inner]\nx = 1\n",
			map[string]int{"listeners.a.tls": 4, "listeners.a.tls.inner.x": 5}},
		{"defined after implied", "[a.b]\n[a]\nc = 1\n", map[string]int{"a": 2, "a.b": 1, "a.c": 3}},
		{"dotted keys", "a.b.c = 1\na.d = 2\n", map[string]int{"a": 1, "a.b": 1, "a.b.c": 1, "a.d": 2}},
		{"multi-line strings", "s = \"\"\"\n[[x]]\n\\\n  \\\"\"\" \"\"\"\"\"\nl = '''\n'''''\nm = \"a\\\"b\" # '\nn = 'a\\'\no = 1\n",
			map[string]int{"s": 1, "l": 5, "m": 7, "n": 8, "o": 9}},
		{"arrays of tables", "[[a]]\nx = 1\n[a.b]\ny = 1\n[[a]]\nx = 2\n[[a.c]]\nz = 1\n[[a.c]]\nz = 2\n",
			map[string]int{"a": 1, "a[0]": 1, "a[0].x": 2, "a[0].b.y": 4, "a[1]": 5, "a[1].x": 6, "a[1].c[0].z": 8, "a[1].c[1]": 9, "a[1].c[1].z": 10}},
		{"inline arrays and tables", "b = [\n  {x = 1, y = {z = 2}},\n  # {x = 9}\n  {\n    x = 3,\n  },\n]\nc = [[1, 2], [{d = 1}]]\n",
			map[string]int{"b": 1, "b[0].x": 2, "b[0].y.z": 2, "b[1]": 4, "b[1].x": 5, "c[1][0].d": 8}},
		{"dates", "d = 1979-05-27 07:32:00Z\nt = 07:32:00\ne = 1979-05-27\nx = 1\n", map[string]int{"d": 1, "t": 2, "e": 3, "x": 4}},
		{"quoted keys", "\"a\\u0062\" = 1\n'c.d' = 2\n[ \"e\" . f ]\ng = 3\n", map[string]int{"ab": 1, "e.f.g": 4}},
		{"crlf", "a = 1\r\n[t]\r\nb = 2\r\n", map[string]int{"a": 1, "t": 2, "t.b": 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v any
			md, err := toml.Decode(tc.toml, &v)
			if err != nil {
				t.Fatal(err)
			}
			root := scanLines(tc.toml, md.Keys())
			if root == nil {
				t.Fatal("scan disagrees with the library")
			}
			for path, want := range tc.lines {
				if got := lineAt(root, path); got != want {
					t.Errorf("%s: line %d, want %d", path, got, want)
				}
			}
		})
	}
}

func TestScanLinesDisagreeing(t *testing.T) {
	text := "a = 1\nb = 2\n"
	for name, keys := range map[string][]toml.Key{
		"other key":  {{"a"}, {"c"}},
		"key short":  {{"a"}},
		"key extra":  {{"a"}, {"b"}, {"c"}},
		"no keys":    nil,
		"nested key": {{"a"}, {"t", "b"}},
	} {
		if scanLines(text, keys) != nil {
			t.Errorf("%s: scan agreed with %v", name, keys)
		}
	}
}

// FuzzScanLines checks scanLines against the library: on every file the
// library parses, it reads the same keys, and gives the line the library
// gives wherever the library gives one (its line for an array of tables is
// that of the last entry's header; ours is the first's, so arrays are not
// compared).
func FuzzScanLines(f *testing.F) {
	example, err := os.ReadFile("../examples/sluice.toml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(example))
	for _, tc := range badConfigs {
		f.Add(tc.toml)
	}
	for _, tc := range badHealthConfigs {
		f.Add(tc.toml)
	}
	f.Add("s = \"\"\"\n[[x]]\n\\\n  \\\"\"\" \"\"\"\"\"\nl = '''\n'''''\nd = 1979-05-27 07:32:00Z\nb = [{x = 1}, {y = {z = [2]}}]\n")
	f.Fuzz(func(t *testing.T, text string) {
		text = trimBOM(text)
		var top map[string]toml.Primitive
		md, err := toml.Decode(text, &top)
		if err != nil {
			return
		}
		root := scanLines(text, md.Keys())
		if root == nil {
			t.Fatalf("scan disagrees with the library's keys %v", md.Keys())
		}
		compareLines(t, &md, text, top, root, "")
	})
}

func compareLines(t *testing.T, md *toml.MetaData, text string, keys map[string]toml.Primitive, n *keyNode, path string) {
	for k, p := range keys {
		var v any
		if md.PrimitiveDecode(p, &v) != nil {
			continue
		}
		if _, ok := v.([]map[string]any); ok {
			continue
		}
		if want := probeLine(md, p, text); want > 0 && n.key(k).lineNo() != want {
			t.Errorf("%s: line %d, library says %d", joinKey(path, k), n.key(k).lineNo(), want)
		}
		var sub map[string]toml.Primitive
		if _, ok := v.(map[string]any); ok && md.PrimitiveDecode(p, &sub) == nil {
			compareLines(t, md, text, sub, n.key(k), joinKey(path, k))
		}
	}
}

// errProbe is what lineProbe returns: the library wraps an error from a
// value's UnmarshalTOML in a ParseError holding the line of the key being
// decoded. Asking this way costs a copy of the whole file, so only the
// tests do.
var errProbe = errors.New("config: line probe")

type lineProbe struct{}

func (*lineProbe) UnmarshalTOML(any) error { return errProbe }

// probeLine returns the library's line for the key p was decoded from, or
// 0 if it has none.
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
