package config

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// manyUnknownKeys returns a valid file whose [log] table, from line 9,
// holds n unknown keys, one a line.
func manyUnknownKeys(n int) []byte {
	var b strings.Builder
	b.WriteString(listenerPG[1:] + poolDB[1:] + "[log]\n")
	for i := range n {
		fmt.Fprintf(&b, "k%d = 1\n", i)
	}
	return []byte(b.String())
}

// manyErrors is how many errors TestManyErrorsBounded makes: quadratic
// code took over 10 minutes for 600,000, and about 2.4 s for 10,000.
const manyErrors = 200_000

// TestManyErrorsBounded parses a file with 200,000 errors in a child
// process it kills after 120 s, long enough for a loaded machine under -race where the
// parse takes about a second, too short for the 15 minutes of the
// quadratic code (issue 8), and checks that the report lists the first
// MaxReported errors in line order and counts the rest.
func TestManyErrorsBounded(t *testing.T) {
	const env = "SLUICE_CONFIG_TEST_CHILD"
	if os.Getenv(env) == "many-errors" {
		_, err := parseFake(string(manyUnknownKeys(manyErrors)))
		var errs Errors
		if !errors.As(err, &errs) || len(errs) != manyErrors {
			t.Fatalf("got %d errors, want %d", len(errs), manyErrors)
		}
		fmt.Printf("<report>\n%v\n</report>\n", err)
		return
	}
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestManyErrorsBounded$", "-test.count=1")
	cmd.Env = append(os.Environ(), env+"=many-errors")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("parsing %d unknown keys took over 120 s: is the error path quadratic again?", manyErrors)
	}
	if err != nil {
		t.Fatalf("child: %v\n%.2000s", err, out)
	}
	_, report, _ := strings.Cut(string(out), "<report>\n")
	report, _, _ = strings.Cut(report, "\n</report>")
	lines := strings.Split(report, "\n")
	if len(lines) != MaxReported+1 {
		t.Fatalf("report has %d lines, want %d:\n%.2000s", len(lines), MaxReported+1, report)
	}
	for i, line := range lines[:MaxReported] {
		if want := fmt.Sprintf("t.toml:%d: log.k%d: unknown key; allowed here: format, level, http_format", 9+i, i); line != want {
			t.Errorf("line %d is %q, want %q", i+1, line, want)
		}
	}
	if got, want := lines[MaxReported], fmt.Sprintf("t.toml: and %d more errors", manyErrors-MaxReported); got != want {
		t.Errorf("last line is %q, want %q", got, want)
	}
}

func TestErrorsReportBound(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int
		last string
	}{
		{"one", 1, "t.toml:1: k: bad 0"},
		{"all shown", MaxReported, fmt.Sprintf("t.toml:%d: k: bad %d", MaxReported, MaxReported-1)},
		{"one more", MaxReported + 1, "t.toml: and 1 more error"},
		{"many more", MaxReported + 5, "t.toml: and 5 more errors"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			es := make(Errors, tc.n)
			for i := range es {
				es[i] = &Error{File: "t.toml", Line: i + 1, Key: "k", Msg: fmt.Sprintf("bad %d", i)}
			}
			lines := strings.Split(es.Error(), "\n")
			if want := min(tc.n, MaxReported+1); len(lines) != want {
				t.Errorf("%d lines, want %d", len(lines), want)
			}
			if got := lines[len(lines)-1]; got != tc.last {
				t.Errorf("last line %q, want %q", got, tc.last)
			}
		})
	}
}

// BenchmarkParseManyErrors parses files of n unknown keys: the time per
// error should not grow with n.
func BenchmarkParseManyErrors(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("errors=%d", n), func(b *testing.B) {
			data := manyUnknownKeys(n)
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := parseFake(string(data)); err == nil {
					b.Fatal("parsed without error")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/error")
		})
	}
}
