package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"

	"sluice/config"
	"sluice/internal/admin"
	"sluice/internal/pool"
)

// explainCommand runs `sluice explain -c FILE --pool P --client ADDR`:
// which backend the client would get from the pool, from the file alone.
// Every backend is taken as passing its checks and its state as the file
// sets it (drain, maintenance), so the answer is that of a running sluice
// whose backends are all healthy: `sluice ctl explain` asks a running one.
func explainCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "", "configuration `file`")
	poolName := fs.String("pool", "", "the `pool` to ask")
	client := fs.String("client", "", "the client's `address`, IP:port (or IP, for pools that hash the IP alone)")
	asJSON := fs.Bool("json", false, "print JSON, as the admin API's explain")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" || *poolName == "" || *client == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: sluice explain -c FILE --pool POOL --client IP:PORT [-json]")
		return errUsage
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return fmt.Errorf("%s: configuration has errors", *path)
	}
	pc := cfg.Pool(*poolName)
	if pc == nil {
		return fmt.Errorf("%s: no pool %q", *path, *poolName)
	}
	addr, err := admin.ParseClient(*client)
	if err != nil {
		return err
	}
	o := poolOptions(*pc, slog.New(slog.DiscardHandler))
	o.Checked = false // every backend taken as healthy
	p, err := pool.New(o)
	if err != nil {
		return err
	}
	e := admin.Explain(admin.Pool{Pool: p, Balance: pc.Balance, HashKey: pc.HashKey}, addr, nil)
	if *asJSON {
		return writeIndentedJSON(stdout, e)
	}
	e.WriteText(stdout)
	return nil
}
