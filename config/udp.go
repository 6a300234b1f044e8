package config

import (
	"maps"
	"slices"
)

// Keys of a listener table: those every protocol has, then each protocol's
// own, in the order errors list them.
var (
	listenerKeys = []string{"bind", "protocol", "pool"}
	// listenerTailKeys every protocol has too, listed after its own.
	listenerTailKeys = []string{"announce"}
	protocolKeys     = [...][]string{
		TCP: {"max_connections", "sockets", "connect_timeout", "idle_timeout", "half_closed_timeout",
			"proxy_protocol", "proxy_protocol_from", "proxy_protocol_timeout", "allow", "deny",
			"max_connections_per_client", "new_connections_per_client", "sni_routes", "client_hello_timeout", "tls",
			"keepalive_idle", "keepalive_interval", "keepalive_count"},
		UDP: {"sockets", "session_timeout", "responses", "max_sessions",
			"proxy_protocol", "proxy_protocol_from", "allow", "deny", "new_connections_per_client"},
		HTTP: httpListenerKeys,
	}
)

// allowListener reports the keys of listener table t that protocol p does
// not have: a key of another protocol says which one it belongs to, any
// other key is unknown. If the protocol itself was invalid (known is
// false), only keys of no protocol are reported, so the errors do not echo
// the bad protocol.
func (t *table) allowListener(p Protocol, known bool) {
	own := slices.Concat(listenerKeys, protocolKeys[p], listenerTailKeys)
	if !known {
		for _, keys := range protocolKeys {
			own = append(own, keys...)
		}
		t.allow(own...)
		return
	}
	rest := *t
	rest.keys = maps.Clone(t.keys)
	for q, keys := range protocolKeys {
		for _, k := range keys {
			// A key several other protocols have is reported once, for
			// the first of them.
			if _, left := rest.keys[k]; left && !slices.Contains(own, k) {
				t.errorf(k, "applies only to protocol = %q, not %q", Protocol(q), p)
				delete(rest.keys, k)
			}
		}
	}
	rest.allow(own...)
}

// udpKeys reads the keys of a UDP listener.
func (t *table) udpKeys(l *Listener) {
	t.duration("session_timeout", &l.SessionTimeout, true)
	t.integer("responses", 0, maxResponses, &l.Responses)
	t.integer("max_sessions", 1, maxSessions, &l.MaxSessions)
}
