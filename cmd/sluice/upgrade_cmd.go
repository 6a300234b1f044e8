package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"sluice/config"
	"sluice/internal/admin"
)

// upgradeCommand makes the sluice running FILE start a new binary on its
// sockets and hand it its connections: through the admin API when FILE
// has an [admin] table (the answer says how it went), else with SIGUSR2
// to the process in FILE's pid_file, watching the pid file for the
// outcome. FILE is checked first: the new process reads it.
func upgradeCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("upgrade", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "", "configuration `file`")
	binary := fs.String("binary", "", "the new sluice `program` (default: the path the running one was started from)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "sluice upgrade: give the configuration file with -c FILE")
		return errUsage
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return fmt.Errorf("%s: configuration has errors; nothing upgraded", *path)
	}
	switch {
	case cfg.Admin != nil:
		return upgradeThroughAPI(cfg, *binary, stdout)
	case *binary != "":
		return fmt.Errorf("%s has no [admin] table: -binary needs the admin API (SIGUSR2 starts the path sluice was started from)", *path)
	case cfg.PIDFile != "":
		return upgradeBySignal(cfg.PIDFile, stdout)
	}
	return fmt.Errorf("%s has neither an [admin] table nor a pid_file: send SIGUSR2 to sluice yourself", *path)
}

// upgradeThroughAPI calls POST /api/v1/upgrade and prints its answer.
func upgradeThroughAPI(cfg *config.Config, binary string, stdout io.Writer) error {
	c, err := newCtlClient("", cfg.Admin.Address(), cfg.Admin.Token, "")
	if err != nil {
		return err
	}
	c.http.Timeout = upgradeTimeout + adoptTimeout
	body, _ := json.Marshal(admin.UpgradeRequest{Binary: binary})
	var r admin.UpgradeJSON
	status, err := c.result("/api/v1/upgrade", body, &r)
	if err != nil {
		return err
	}
	if r.Result == "" {
		return fmt.Errorf("%w: %s", errAPI, status)
	}
	if r.Result != "ok" {
		return fmt.Errorf("upgrade failed, the running sluice serves on: %s", r.Error)
	}
	fmt.Fprintf(stdout, "upgraded: the new sluice (pid %d) serves; the old one drains and exits\n", r.PID)
	return nil
}

// upgradeBySignal sends SIGUSR2 to the pid in pidFile and waits for the
// outcome: the new process writes its pid there once it has started; a
// failed upgrade makes the old one write its own again.
func upgradeBySignal(pidFile string, stdout io.Writer) error {
	pid, err := readPIDFile(pidFile)
	if err != nil {
		return err
	}
	before, err := os.Stat(pidFile)
	if err != nil {
		return fmt.Errorf("reading the pid file: %w", err)
	}
	if err := syscall.Kill(pid, syscall.SIGUSR2); err != nil {
		return fmt.Errorf("signalling sluice (pid %d from %s): %w", pid, pidFile, err)
	}
	deadline := time.Now().Add(upgradeTimeout + 10*time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polling a file another process writes
		fi, err := os.Stat(pidFile)
		if err != nil || fi.ModTime().Equal(before.ModTime()) {
			continue
		}
		now, err := readPIDFile(pidFile)
		switch {
		case err != nil:
			continue // being written
		case now == pid:
			return errors.New("upgrade failed, the running sluice serves on: its log says why")
		}
		fmt.Fprintf(stdout, "upgraded: the new sluice (pid %d) serves; the old one (pid %d) drains and exits\n", now, pid)
		return nil
	}
	return fmt.Errorf("no new sluice wrote %s within %v: see the log of pid %d", pidFile, upgradeTimeout, pid)
}
