//go:build !race

package l7

// raceAllocs is what the race detector adds to allocations per request.
const raceAllocs = 0
