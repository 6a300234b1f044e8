package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"sluice/config"
	"sluice/internal/admin"
	"sluice/internal/pool"
)

const ctlUsage = `Usage: sluice ctl [-c FILE | -a ADDR] [-token TOKEN | -token-file FILE] [-json] COMMAND

Calls a running sluice's admin API (its [admin] table). -c FILE takes the
address and token from that configuration file; -a takes an IP:port or a
Unix socket path.

Commands:
  status                       listeners and pools, with backend states
  pools | pool NAME            pools and their backends
  listeners                    listeners and their counts
  drain POOL BACKEND           stop new connections to BACKEND; live ones go on
  maintenance POOL BACKEND     the same, and quiet its health logging
  enable POOL BACKEND          take it back
  weight POOL BACKEND N        give BACKEND weight N (1 to 256)
  add POOL ADDRESS [WEIGHT]    add a backend (checked as the pool's [health] says)
  remove POOL BACKEND          remove a backend: it drains, and its connections
                               are closed after drain_timeout
  explain POOL CLIENT          which backend CLIENT (IP:port) would get, and why
  bgp                          BGP sessions and what is announced
  drain-host                   withdraw this host's BGP announcements
  enable-host                  announce them again
  metrics                      the Prometheus metrics
`

// ctlCommand runs `sluice ctl`.
func ctlCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, ctlUsage) }
	file := fs.String("c", "", "configuration `file` to take the admin address and token from")
	addr := fs.String("a", "", "admin `address`: IP:port or a Unix socket path")
	token := fs.String("token", "", "bearer `token`")
	tokenFile := fs.String("token-file", "", "`file` holding the bearer token")
	asJSON := fs.Bool("json", false, "print the API's JSON as it is")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := newCtlClient(*file, *addr, *token, *tokenFile)
	if err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errUsage
	}
	return c.run(fs.Args(), *asJSON, stdout, stderr)
}

// ctlClient calls one sluice's admin API.
type ctlClient struct {
	base  string
	token string
	http  *http.Client
}

func newCtlClient(file, addr, token, tokenFile string) (*ctlClient, error) {
	if file != "" {
		cfg, err := config.Load(file)
		if err != nil {
			return nil, err
		}
		if cfg.Admin == nil {
			return nil, fmt.Errorf("%s has no [admin] table", file)
		}
		if addr == "" {
			addr = cfg.Admin.Address()
		}
		if token == "" && tokenFile == "" {
			token = cfg.Admin.Token
		}
	}
	if addr == "" {
		return nil, errors.New("give the admin address with -a ADDR or a configuration with -c FILE")
	}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("reading token file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	c := &ctlClient{base: "http://" + addr, token: token, http: &http.Client{Timeout: 30 * time.Second}}
	if strings.Contains(addr, "/") {
		// The host in the URL is a placeholder: every connection goes
		// to the socket.
		c.base = "http://sluice"
		c.http.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", addr)
		}}
	}
	return c, nil
}

func (c *ctlClient) run(args []string, asJSON bool, stdout, stderr io.Writer) error {
	cmd, args := args[0], args[1:]
	want := map[string]int{"status": 0, "pools": 0, "listeners": 0, "metrics": 0, "pool": 1,
		"drain": 2, "maintenance": 2, "enable": 2, "explain": 2, "weight": 3, "add": 2, "remove": 2,
		"bgp": 0, "drain-host": 0, "enable-host": 0}
	n, ok := want[cmd]
	if cmd == "add" && len(args) == 3 {
		n = 3 // with a weight
	}
	if !ok || len(args) != n {
		fmt.Fprint(stderr, ctlUsage)
		return errUsage
	}
	switch cmd {
	case "metrics":
		body, err := c.do(http.MethodGet, "/metrics", nil)
		if err == nil {
			_, err = stdout.Write(body)
		}
		return err
	case "status", "pools", "pool":
		path := "/api/v1/pools"
		if cmd == "pool" {
			path += "/" + url.PathEscape(args[0])
		}
		if cmd == "status" {
			path = "/api/v1/status"
		}
		return c.show(path, asJSON, stdout, func(b []byte) error { return printStatus(stdout, cmd, b) })
	case "listeners":
		return c.show("/api/v1/listeners", asJSON, stdout, func(b []byte) error { return printStatus(stdout, cmd, b) })
	case "bgp", "drain-host", "enable-host":
		return c.bgp(cmd, asJSON, stdout)
	case "explain":
		path := "/api/v1/pools/" + url.PathEscape(args[0]) + "/explain?client=" + url.QueryEscape(args[1])
		return c.show(path, asJSON, stdout, func(b []byte) error {
			var e admin.ExplainJSON
			if err := json.Unmarshal(b, &e); err != nil {
				return err
			}
			e.WriteText(stdout)
			return nil
		})
	}
	method, path, body, err := editRequest(cmd, args)
	if err != nil {
		fmt.Fprintln(stderr, "sluice ctl:", err)
		return errUsage
	}
	out, err := c.do(method, path, body)
	if err != nil {
		return err
	}
	if asJSON {
		_, err = stdout.Write(out)
		return err
	}
	var b admin.BackendJSON
	if err := json.Unmarshal(out, &b); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "pool %s backend %s: %s, weight %d, %d active\n", args[0], b.Address, b.State, b.Weight, b.Active)
	return nil
}

// editRequest returns the request of drain, maintenance, enable, weight,
// add or remove.
func editRequest(cmd string, args []string) (method, path string, body []byte, err error) {
	backends := "/api/v1/pools/" + url.PathEscape(args[0]) + "/backends"
	backend := backends + "/" + url.PathEscape(args[1])
	switch cmd {
	case "weight":
		w, err := strconv.Atoi(args[2])
		if err != nil {
			return "", "", nil, fmt.Errorf("weight %q: want a number from 1 to 256", args[2])
		}
		body, _ = json.Marshal(admin.WeightRequest{Weight: w})
		return http.MethodPut, backend + "/weight", body, nil
	case "add":
		req := admin.AddRequest{Address: args[1]}
		if len(args) == 3 {
			if req.Weight, err = strconv.Atoi(args[2]); err != nil {
				return "", "", nil, fmt.Errorf("weight %q: want a number from 1 to 256", args[2])
			}
		}
		body, _ = json.Marshal(req)
		return http.MethodPost, backends, body, nil
	case "remove":
		return http.MethodDelete, backend, nil, nil
	}
	// drain, maintenance, enable: the state names of the file.
	state := map[string]pool.Admin{"drain": pool.Drain, "maintenance": pool.Maintenance, "enable": pool.Enabled}[cmd]
	body, _ = json.Marshal(admin.StateRequest{State: state.String()})
	return http.MethodPut, backend + "/state", body, nil
}

// show gets path and prints it as JSON or through text.
func (c *ctlClient) show(path string, asJSON bool, stdout io.Writer, text func([]byte) error) error {
	body, err := c.do(http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	if asJSON {
		_, err = stdout.Write(body)
		return err
	}
	return text(body)
}

// errAPI marks an error the admin API answered with.
var errAPI = errors.New("admin API")

// send makes a request of the admin API; the caller closes the answer's
// body.
func (c *ctlClient) send(method, path string, body []byte) (*http.Response, error) {
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("calling the admin API: %w", err)
	}
	return resp, nil
}

// result POSTs to path and decodes the answer into out, whatever its
// status: reload and upgrade answer a failure (422) with a result of
// their own kind, not an admin.ErrorJSON. It returns the status line, for
// an answer without a result.
func (c *ctlClient) result(path string, body []byte, out any) (string, error) {
	resp, err := c.send(http.MethodPost, path, body)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
		return "", fmt.Errorf("%w: %s", errAPI, resp.Status)
	}
	return resp.Status, nil
}

func (c *ctlClient) do(method, path string, body []byte) ([]byte, error) {
	resp, err := c.send(method, path, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the admin API's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e admin.ErrorJSON
		if json.Unmarshal(out, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%w: %s: %s", errAPI, resp.Status, e.Error)
		}
		return nil, fmt.Errorf("%w: %s", errAPI, resp.Status)
	}
	return out, nil
}

// printStatus prints the answer of status, pools, pool or listeners as
// tables.
func printStatus(w io.Writer, cmd string, body []byte) error {
	var st admin.StatusJSON
	var err error
	switch cmd {
	case "status":
		err = json.Unmarshal(body, &st)
	case "pools":
		err = json.Unmarshal(body, &st.Pools)
	case "pool":
		st.Pools = make([]admin.PoolJSON, 1)
		err = json.Unmarshal(body, &st.Pools[0])
	case "listeners":
		err = json.Unmarshal(body, &st.Listeners)
	}
	if err != nil {
		return fmt.Errorf("reading the admin API's answer: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(st.Listeners) > 0 {
		fmt.Fprintln(tw, "LISTENER\tPROTOCOL\tBIND\tPOOL\tENDED\tRECEIVED\tSENT\tENDS")
		for _, l := range st.Listeners {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", l.Name, l.Protocol, l.Bind, l.Pool,
				sum(l.Ended), l.ReceivedBytes, l.SentBytes, endList(l.Ended))
		}
		fmt.Fprintln(tw)
	}
	for _, p := range st.Pools {
		algo := p.Balance
		if p.HashKey != "" {
			algo += " on " + p.HashKey
		}
		fmt.Fprintf(tw, "POOL %s (%s)\tSTATE\tWEIGHT\tACTIVE\tENDED\tLAST CHECK\n", p.Name, algo)
		for _, b := range p.Backends {
			addr := b.Address
			if b.Backup {
				addr += " (backup)"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%d\t%s\n", addr, b.State, b.Weight, b.Active, sum(b.Ended), checkText(b.LastCheck))
		}
		if p.Unavailable != "" {
			fmt.Fprintf(tw, "  %s\n", p.Unavailable)
		}
	}
	return tw.Flush()
}

func checkText(c *admin.Check) string {
	switch {
	case c == nil:
		return "-"
	case c.Passed:
		return fmt.Sprintf("passed %s ago", time.Since(c.At).Round(time.Millisecond))
	}
	return fmt.Sprintf("failed %s ago: %s", time.Since(c.At).Round(time.Millisecond), c.Error)
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

func endList(m map[string]uint64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func writeIndentedJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
