package admin

import "sluice/internal/pool"

// What the admin package reads of a backend's configuration, in one place.

func backendWeight(b *pool.Backend) int { return b.Weight() }

func backendBackup(b *pool.Backend) bool { return b.Backup() }
