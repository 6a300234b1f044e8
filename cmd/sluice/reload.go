package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"

	"sluice/config"
	"sluice/internal/admin"
)

// reloadCommand makes the sluice running FILE reload it: through the
// admin API when FILE has an [admin] table (and then prints how it went),
// else with SIGHUP to the process in FILE's pid_file. FILE is checked
// first: with errors, nothing is signalled.
func reloadCommand(args []string, stdout, stderr io.Writer) error {
	path, err := configFlag("reload", args, stderr)
	if err != nil {
		return err
	}
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return fmt.Errorf("%s: configuration has errors; nothing reloaded", path)
	}
	switch {
	case cfg.Admin != nil:
		return reloadThroughAPI(cfg, path, stdout, stderr)
	case cfg.PIDFile != "":
		pid, err := readPIDFile(cfg.PIDFile)
		if err != nil {
			return err
		}
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			return fmt.Errorf("signalling sluice (pid %d from %s): %w", pid, cfg.PIDFile, err)
		}
		fmt.Fprintf(stdout, "sent SIGHUP to sluice (pid %d); its log says whether %s was applied\n", pid, path)
		return nil
	}
	return fmt.Errorf("%s has neither an [admin] table nor a pid_file: send SIGHUP to sluice yourself", path)
}

// reloadThroughAPI calls POST /api/v1/reload and prints its answer.
func reloadThroughAPI(cfg *config.Config, path string, stdout, stderr io.Writer) error {
	c, err := newCtlClient("", cfg.Admin.Address(), cfg.Admin.Token, "")
	if err != nil {
		return err
	}
	var r admin.ReloadJSON
	status, err := c.result("/api/v1/reload", nil, &r)
	if err != nil {
		return err
	}
	if r.Result == "" {
		return fmt.Errorf("%w: %s", errAPI, status)
	}
	if r.Result == "ok" {
		fmt.Fprintf(stdout, "%s: reloaded\n", path)
		return nil
	}
	for _, e := range r.Errors {
		fmt.Fprintln(stderr, e)
	}
	return fmt.Errorf("%s: reload failed; the running configuration is unchanged", path)
}

// writePIDFile writes the process id to path, if path is not "". It
// renames a new file into place: a reader (sluice reload, sluice upgrade)
// never sees it empty, and a failed upgrade rewrites it while they may be
// reading.
func writePIDFile(path string) error {
	if path == "" {
		return nil
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// removePIDFile removes path if it still holds this process's id.
func removePIDFile(path string) {
	if pid, err := readPIDFile(path); err == nil && pid == os.Getpid() {
		os.Remove(path)
	}
}

var errNoPID = errors.New("no process id")

func readPIDFile(path string) (int, error) {
	if path == "" {
		return 0, errNoPID
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading the pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: %w", path, errNoPID)
	}
	return pid, nil
}
