package health

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func parseRESP(s string) (respValue, error) {
	return readRESP(newRESPReader(strings.NewReader(s)))
}

func TestReadRESP(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     respValue
		err      error // nil: want success
	}{
		{"simple", "+PONG\r\n", respValue{kind: '+', str: "PONG"}, nil},
		{"empty simple", "+\r\n", respValue{kind: '+'}, nil},
		{"error", "-WRONGPASS invalid username-password pair\r\n",
			respValue{kind: '-', str: "WRONGPASS invalid username-password pair"}, nil},
		{"integer", ":-42\r\n", respValue{kind: ':', str: "-42"}, nil},
		{"bulk", "$6\r\nmaster\r\n", respValue{kind: '$', str: "master"}, nil},
		{"bulk with CRLF inside", "$4\r\na\r\nb\r\n", respValue{kind: '$', str: "a\r\nb"}, nil},
		{"null bulk", "$-1\r\n", respValue{kind: '$', null: true}, nil},
		{"null array", "*-1\r\n", respValue{kind: '*', null: true}, nil},
		{"ROLE of a primary", "*3\r\n$6\r\nmaster\r\n:3129659\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n9001\r\n$7\r\n3129242\r\n",
			respValue{kind: '*', elems: []respValue{
				{kind: '$', str: "master"}, {kind: ':', str: "3129659"},
				{kind: '*', elems: []respValue{{kind: '*', elems: []respValue{
					{kind: '$', str: "127.0.0.1"}, {kind: '$', str: "9001"}, {kind: '$', str: "3129242"},
				}}}},
			}}, nil},
		{"no CR", "+PONG\n", respValue{}, errRESP},
		{"no type", "\r\n", respValue{}, errRESP},
		{"unknown type", "%1\r\n", respValue{}, errRESP},
		{"bad integer", ":12a\r\n", respValue{}, errRESP},
		{"bulk too long", "$99999999\r\n", respValue{}, errRESP},
		{"negative length", "*-2\r\n", respValue{}, errRESP},
		{"bulk without CRLF", "$2\r\nabcd", respValue{}, errRESP},
		{"too many elements", "*1025\r\n", respValue{}, errRESP},
		{"too deep", "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", respValue{}, errRESP},
		{"long line", "+" + strings.Repeat("x", respMaxLine) + "\r\n", respValue{}, errRESP},
		{"cut line", "+PON", respValue{}, io.ErrUnexpectedEOF},
		{"cut bulk", "$6\r\nmas", respValue{}, io.ErrUnexpectedEOF},
		{"cut array", "*2\r\n:1\r\n", respValue{}, io.EOF},
		{"nothing", "", respValue{}, io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRESP(tc.in)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("got %+v, %v; want error %v", got, err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestRESPReplyLimit(t *testing.T) {
	// Many small arrays, each within the limits, still stop at respMaxReply bytes.
	var b strings.Builder
	for b.Len() <= respMaxReply {
		b.WriteString("*3\r\n:1\r\n:2\r\n:3\r\n")
	}
	br := newRESPReader(strings.NewReader(b.String()))
	var err error
	for n := 0; err == nil; n++ {
		_, err = readRESP(br)
		if n > respMaxReply {
			t.Fatal("read past the reply limit")
		}
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		t.Fatalf("got %v, want the reply cut at the limit", err)
	}
}

func TestAppendCommand(t *testing.T) {
	got := string(appendCommand(nil, "AUTH", "checker", "pa ss\r\n"))
	want := "*3\r\n$4\r\nAUTH\r\n$7\r\nchecker\r\n$7\r\npa ss\r\n\r\n"
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// encodeRESP writes v back in RESP2, for the fuzz test's round trip.
func encodeRESP(b *bytes.Buffer, v respValue) {
	b.WriteByte(v.kind)
	switch {
	case v.null:
		b.WriteString("-1\r\n")
	case v.kind == '$':
		b.WriteString(strconv.Itoa(len(v.str)) + "\r\n" + v.str + "\r\n")
	case v.kind == '*':
		b.WriteString(strconv.Itoa(len(v.elems)) + "\r\n")
		for _, e := range v.elems {
			encodeRESP(b, e)
		}
	default:
		b.WriteString(v.str + "\r\n")
	}
}

// FuzzRESP feeds the reply reader arbitrary bytes, as a hostile or broken server
// would. It must not panic, and whatever it accepts must encode back to a reply that
// reads the same.
func FuzzRESP(f *testing.F) {
	for _, s := range []string{
		"+PONG\r\n", "-LOADING Redis is loading the dataset in memory\r\n", ":1\r\n",
		"$6\r\nmaster\r\n", "$-1\r\n", "*-1\r\n", "*0\r\n",
		"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6380\r\n$9\r\nconnected\r\n:3167038\r\n",
		"*3\r\n$6\r\nmaster\r\n:3129659\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n9001\r\n$7\r\n3129242\r\n",
		"*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", "$3\r\nab\r\n\r\n", "+OK\r\n+PONG\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), respMaxLine)
		v, err := readRESP(br)
		if err != nil {
			return
		}
		var enc bytes.Buffer
		encodeRESP(&enc, v)
		again, err := parseRESP(enc.String())
		if err != nil || !reflect.DeepEqual(v, again) {
			t.Fatalf("%q read as %+v, encoded as %q, read back as %+v, %v", data, v, enc.String(), again, err)
		}
	})
}
