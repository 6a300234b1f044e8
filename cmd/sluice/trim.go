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
	trimCheck = time.Second     // how often to look (reading metrics is cheap)
	trimGap   = 3 * time.Second // at most one forced collection this often
	trimAbove = 8 << 20         // idle bytes worth a forced collection
)

// trimMemory runs until ctx ends.
func trimMemory(ctx context.Context) {
	sample := []metrics.Sample{
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/stacks:bytes"},
		{Name: "/sched/goroutines:goroutines"},
	}
	t := time.NewTicker(trimCheck)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(last) < trimGap {
			continue
		}
		metrics.Read(sample)
		free, used := sample[0].Value.Uint64(), sample[1].Value.Uint64()
		// Stacks of exited goroutines stay reserved until a collection;
		// count what the live goroutines cannot be using (8 KiB each
		// is generous for sluice's) as idle too.
		stacks, live := sample[2].Value.Uint64(), sample[3].Value.Uint64()*8<<10
		if stacks > live {
			free += stacks - live
		}
		if free >= trimAbove && free >= used/2 {
			debug.FreeOSMemory()
			last = time.Now()
		}
	}
}
