package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAdminTable(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	spaced := filepath.Join(dir, "spaced")
	if err := os.WriteFile(spaced, []byte("two words\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		toml    string
		network string
		address string
		token   string
		warning string // substring of the one warning; "" means none
		errors  []string
	}{
		{name: "loopback", toml: "[admin]\nbind = \"127.0.0.1:9901\"\n",
			network: "tcp", address: "127.0.0.1:9901"},
		{name: "ipv6 loopback with token", toml: "[admin]\nbind = \"[::1]:9901\"\ntoken = \"abc\"\n",
			network: "tcp", address: "[::1]:9901", token: "abc"},
		{name: "unix socket", toml: "[admin]\nbind = \"/run/sluice/admin.sock\"\n",
			network: "unix", address: "/run/sluice/admin.sock"},
		{name: "relative unix socket", toml: "[admin]\nbind = \"./admin.sock\"\n",
			network: "unix", address: "admin.sock"},
		{name: "token file", toml: "[admin]\nbind = \"10.0.0.5:9901\"\ntoken_file = \"" + tokenFile + "\"\n",
			network: "tcp", address: "10.0.0.5:9901", token: "s3cret"},
		{name: "public without token warns", toml: "[admin]\nbind = \"10.0.0.5:9901\"\n",
			network: "tcp", address: "10.0.0.5:9901",
			warning: "t.toml:2: admin.bind: 10.0.0.5:9901 is not a loopback address and no token is set"},
		{name: "wildcard without token warns", toml: "[admin]\nbind = \":9901\"\n",
			network: "tcp", address: "[::]:9901", warning: "t.toml:2: admin.bind: [::]:9901 is not a loopback"},
		{name: "missing bind", toml: "[admin]\ntoken = \"x\"\n",
			errors: []string{"t.toml:1: admin.bind: required key is missing"}},
		{name: "host name", toml: "[admin]\nbind = \"localhost:9901\"\n",
			errors: []string{"t.toml:2: admin.bind: \"localhost:9901\": host names are not resolved; give an IP address (or a Unix socket path, with a /)"}},
		{name: "not a table", toml: "admin = \"127.0.0.1:9901\"\n",
			errors: []string{"t.toml:1: admin: must be a table, not a string"}},
		{name: "unknown key", toml: "[admin]\nbind = \"127.0.0.1:9901\"\nport = 1\n",
			errors: []string{"t.toml:3: admin.port: unknown key; allowed here: bind, token, token_file"}},
		{name: "both tokens", toml: "[admin]\nbind = \"127.0.0.1:9901\"\ntoken = \"a\"\ntoken_file = \"" + tokenFile + "\"\n",
			errors: []string{"t.toml:4: admin.token_file: give token or token_file, not both"}},
		{name: "empty token", toml: "[admin]\nbind = \"127.0.0.1:9901\"\ntoken = \"\"\n",
			errors: []string{"t.toml:3: admin.token: must be a non-empty string without spaces or line breaks"}},
		{name: "missing token file", toml: "[admin]\nbind = \"127.0.0.1:9901\"\ntoken_file = \"" + filepath.Join(dir, "nope") + "\"\n",
			errors: []string{"t.toml:3: admin.token_file: reading password file"}},
		{name: "token file with spaces", toml: "[admin]\nbind = \"127.0.0.1:9901\"\ntoken_file = \"" + spaced + "\"\n",
			errors: []string{"t.toml:3: admin.token_file:", "the token must be one line without spaces"}},
		{name: "directory", toml: "[admin]\nbind = \"/run/sluice/\"\n",
			errors: []string{"t.toml:2: admin.bind: \"/run/sluice/\": want a socket file, not a directory"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := parseFake(c.toml + listenerPG + poolDB)
			if len(c.errors) > 0 {
				if err == nil {
					t.Fatalf("parsed; want errors %q", c.errors)
				}
				wantContains(t, err.Error(), c.errors...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			a := cfg.Admin
			if a == nil {
				t.Fatal("no Admin")
			}
			if a.Network() != c.network || a.Address() != c.address || a.Token != c.token {
				t.Errorf("got %s %s token %q; want %s %s token %q", a.Network(), a.Address(), a.Token, c.network, c.address, c.token)
			}
			switch {
			case c.warning == "" && len(cfg.Warnings) > 0:
				t.Errorf("unexpected warnings: %v", cfg.Warnings)
			case c.warning != "" && (len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0].Error(), c.warning)):
				t.Errorf("warnings %v; want one with %q", cfg.Warnings, c.warning)
			}
		})
	}
}

func TestNoAdminTable(t *testing.T) {
	cfg, err := parseFake(listenerPG + poolDB)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Admin != nil || len(cfg.Warnings) > 0 {
		t.Errorf("Admin %+v, warnings %v; want none", cfg.Admin, cfg.Warnings)
	}
}
