package main

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Memory trimming: a burst of connections leaves goroutine stacks and
// buffers freed but still resident. The runtime returns such memory to the
// kernel in step with garbage collections, and a proxy whose connections
// are parked allocates too little to run one for minutes. Like HAProxy's
// malloc_trim after a burst, sluice checks now and then and gives back
// what sits idle.
const (
	trimEvery = 10 * time.Second
	trimAbove = 8 << 20 // idle bytes worth a forced collection
)

// trimMemory runs until ctx ends.
func trimMemory(ctx context.Context) {
	sample := []metrics.Sample{
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
	}
	t := time.NewTicker(trimEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(sample)
		free, used := sample[0].Value.Uint64(), sample[1].Value.Uint64()
		if free >= trimAbove && free >= used/2 {
			debug.FreeOSMemory()
		}
	}
}
