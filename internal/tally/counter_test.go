package tally

import "sync/atomic"

type int64Counter struct{ v atomic.Int64 }

func (c *int64Counter) add(n int64) { c.v.Add(n) }
func (c *int64Counter) load() int64 { return c.v.Load() }
