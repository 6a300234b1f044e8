// Command sluice is a TCP, UDP and HTTP(S) load balancer configured by one
// TOML file.
//
//	sluice -c sluice.toml          run (same as: sluice run -c sluice.toml)
//	sluice check -c sluice.toml    check the file, print every error, exit 0 or 1
//	sluice reload -c sluice.toml   make the running sluice reload the file
//	sluice upgrade -c sluice.toml  make the running sluice hand over to a new binary
//	sluice demo                    run a demo with three built-in backends
//	sluice ctl COMMAND             call a running sluice's admin API
//	sluice explain -c FILE ...     which backend a client would get, from the file
//	sluice version | help
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

const usage = `sluice: a TCP, UDP and HTTP(S) load balancer configured by one TOML file.

Usage:
  sluice -c FILE            run with the configuration in FILE
  sluice run -c FILE        the same
  sluice check -c FILE      check FILE; print every error and exit 1, or exit 0
  sluice reload -c FILE     check FILE, then make the sluice running it
                            reload it: through the admin API ([admin];
                            prints the result) or with SIGHUP to the pid
                            in pid_file
  sluice upgrade -c FILE [-binary PATH]
                            make the sluice running FILE start a new
                            binary (by default the path it was started
                            from) on its sockets and hand it every
                            established connection: through the admin API
                            (prints the result) or with SIGUSR2 to the pid
                            in pid_file
  sluice demo               run a demo: three backends on 127.0.0.1:7101-7103
                            balanced behind 127.0.0.1:7000 (TCP) and
                            127.0.0.1:7001 (UDP), web servers behind
                            127.0.0.1:7080 (HTTP) and 7443 (HTTPS), the
                            admin listener on 9901; -print shows its config
  sluice ctl [-c FILE | -a ADDR] COMMAND
                            call a running sluice's admin API ([admin]):
                            status, pools, listeners, drain, maintenance,
                            enable, weight, add, remove, explain, metrics
                            (sluice ctl -h)
  sluice explain -c FILE --pool POOL --client IP:PORT
                            which backend the client would get, and why,
                            from the file (every backend taken as healthy)
  sluice version            print the version
  sluice help               print this help

Signals: SIGTERM or SIGINT stops accepting (UDP: stops opening sessions), lets
connections and sessions finish for drain_timeout, then closes them; a second
signal closes them at once. SIGHUP reloads the configuration file: with any
error, the running configuration stays and the errors are logged. SIGUSR2
upgrades: the binary at the path sluice was started from starts on the same
sockets, and once it serves, takes over the established connections; this
process drains the rest and exits. If it fails, this process serves on.
`

func main() {
	os.Exit(cli(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks a command line that could not be understood.
var errUsage = errors.New("usage")

// cli runs the command in args and returns the exit status.
func cli(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = runCommand(args, stderr)
	case "check":
		err = checkCommand(args, stdout, stderr)
	case "demo":
		err = demoCommand(args, stdout, stderr)
	case "reload":
		err = reloadCommand(args, stdout, stderr)
	case "upgrade":
		err = upgradeCommand(args, stdout, stderr)
	case "ctl":
		err = ctlCommand(args, stdout, stderr)
	case "explain":
		err = explainCommand(args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "sluice", buildVersion())
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "sluice: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage), errors.Is(err, flag.ErrHelp):
		return 2
	default:
		fmt.Fprintln(stderr, "sluice:", err)
		return 1
	}
}

// configFlag parses the -c flag shared by run and check.
func configFlag(name string, args []string, stderr io.Writer) (string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "", "configuration `file`")
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if *path == "" || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sluice %s: give the configuration file with -c FILE\n", name)
		return "", errUsage
	}
	return *path, nil
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v := bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " " + s.Value[:12]
			}
		}
		return v + " " + bi.GoVersion
	}
	return "unknown"
}
