package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"sluice/internal/bgp"
)

// bgp runs ctl's bgp, drain-host and enable-host: each prints the BGP
// status, the last two after drain or enable.
func (c *ctlClient) bgp(cmd string, asJSON bool, stdout io.Writer) error {
	method, path := http.MethodGet, "/api/v1/bgp"
	switch cmd {
	case "drain-host":
		method, path = http.MethodPost, "/api/v1/host/drain"
	case "enable-host":
		method, path = http.MethodPost, "/api/v1/host/enable"
	}
	body, err := c.do(method, path, nil)
	if err != nil {
		return err
	}
	if asJSON {
		_, err = stdout.Write(body)
		return err
	}
	var st bgp.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("reading the admin API's answer: %w", err)
	}
	return printBGP(stdout, st)
}

func printBGP(w io.Writer, st bgp.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tAS\tSTATE\tSINCE\tUP COUNT")
	for _, p := range st.Peers {
		since := "-"
		if !p.Since.IsZero() {
			since = time.Since(p.Since).Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\n", p.Addr, p.AS, p.State, since, p.Established)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "PREFIX\tANNOUNCED\tLISTENERS")
	for _, r := range st.Routes {
		fmt.Fprintf(tw, "%s\t%v\t%s\n", r.Prefix, r.Announced, strings.Join(r.Listeners, ","))
	}
	switch {
	case st.Withdrawn:
		fmt.Fprintln(tw, "\nhost shutting down: everything withdrawn")
	case st.Drained:
		fmt.Fprintln(tw, "\nhost drained: everything withdrawn (sluice ctl enable-host announces again)")
	}
	return tw.Flush()
}
