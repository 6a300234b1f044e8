package testutil

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// Eventually returns as soon as its condition holds, and fails the test
// when it never does.
func TestEventually(t *testing.T) {
	var n atomic.Int32
	start := time.Now()
	Eventually(t, 5*time.Second, "the third try", func() bool { return n.Add(1) == 3 })
	if took := time.Since(start); took > time.Second {
		t.Errorf("returned after %v for a condition that held at the third try", took)
	}

	ft := &fakeT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Eventually(ft, 20*time.Millisecond, "nothing", func() bool { return false })
	}()
	<-done
	if !ft.failed {
		t.Error("a condition that never holds did not fail the test")
	}
}

// fakeT records a Fatalf instead of ending the test; Eventually returns
// through runtime.Goexit, as testing's own Fatalf does.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatalf(string, ...any) {
	f.failed = true
	runtime.Goexit()
}
