// Package config loads sluice's one TOML file, rejects bad input at load
// with every problem reported at once (each with its key path and
// file:line; the error's text lists the first 100), and returns plain
// parsed values: the runtime never sees TOML types.
//
//	cfg, err := config.Load("/etc/sluice/sluice.toml")
//	if err != nil { return err } // err is a config.Errors listing every problem
//	for _, l := range cfg.Listeners { serve(l, cfg.Pool(l.Pool)) }
package config
