package config

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestListenerTicketKeys(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "keys")
	os.WriteFile(good, []byte(base64.StdEncoding.EncodeToString(make([]byte, 80))+"\n"), 0o600)
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte(base64.StdEncoding.EncodeToString(make([]byte, 16))+"\n"), 0o600)
	head := "[listeners.t]\nbind = \"127.0.0.1:8443\"\npool = \"db\"\n[listeners.t.tls]\n" +
		"acme = { names = [\"a.example.com\"], storage = \"acme\" }\n"
	for _, tc := range []struct {
		name, keys string
		file       string
		rotation   time.Duration
		err        string
	}{
		{"none", "", "", 0, ""},
		{"a file, relative", "ticket_key_file = \"keys\"\n", good, 0, ""},
		{"rotation", "ticket_rotation = \"1h\"\n", "", time.Hour, ""},
		{"a short key", "ticket_key_file = \"short\"\n", "", 0, "t.toml:6: listeners.t.tls.ticket_key_file: reading session ticket keys from " + short + ": line 1: a key of 16 bytes, want 32 or more"},
		{"missing", "ticket_key_file = \"nope\"\n", "", 0, "listeners.t.tls.ticket_key_file: reading session ticket keys: open"},
		{"both", "ticket_key_file = \"keys\"\nticket_rotation = \"1h\"\n", "", 0, "listeners.t.tls.ticket_rotation: is for keys made in memory"},
		{"zero rotation", "ticket_rotation = \"0s\"\n", "", 0, "listeners.t.tls.ticket_rotation: must be greater than zero"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse(filepath.Join(dir, "t.toml"), []byte(head+tc.keys+poolDB))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("error %v\nwant %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := cfg.Listeners[0].TLS
			if c.TicketKeyFile != tc.file || c.TicketRotation != tc.rotation {
				t.Errorf("file %q rotation %v, want %q %v", c.TicketKeyFile, c.TicketRotation, tc.file, tc.rotation)
			}
		})
	}
}
