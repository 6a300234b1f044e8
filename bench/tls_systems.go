package main

import (
	"fmt"

	"sluice/internal/certs"
)

// sluiceTLS renders sluice's TLS listeners: TLS ended with each
// certificate (Go's default curve preferences: the client's offer
// decides), and SNI routes.
func sluiceTLS(p proxyParams) string {
	if p.tls == nil {
		return ""
	}
	s := ""
	for _, l := range []struct {
		name, addr string
		pair       certs.Pair
	}{{"bench_tls_ecdsa", p.tls.ecdsa, p.tls.tlsBench.ecdsa}, {"bench_tls_rsa", p.tls.rsa, p.tls.tlsBench.rsa}} {
		s += fmt.Sprintf(`
[listeners.%s]
bind = %q
pool = "b"
sockets = %d
idle_timeout = %q
[listeners.%[1]s.tls]
cert_file = %[5]q
key_file = %[6]q
`, l.name, l.addr, p.cores, idleTimeout, l.pair.CertFile, l.pair.KeyFile)
	}
	return s + fmt.Sprintf(`
[listeners.bench_sni]
bind = %q
sockets = %d
idle_timeout = %q
[[listeners.bench_sni.sni_routes]]
names = [%q]
pool = "tls_b"

[pools.tls_b]
[[pools.tls_b.backends]]
address = %q
`, p.tls.sni, p.cores, idleTimeout, tlsName, p.tls.backend.addr())
}

// haproxyTLS renders HAProxy's TLS frontends: ssl crt on the bind, and
// req.ssl_sni routing after the hello is in (inspect-delay), as its
// documentation's SNI passthrough does.
func haproxyTLS(p proxyParams) string {
	if p.tls == nil {
		return ""
	}
	return fmt.Sprintf(`
frontend bench_tls_ecdsa
    bind %s ssl crt %s
    default_backend b

frontend bench_tls_rsa
    bind %s ssl crt %s
    default_backend b

frontend bench_sni
    bind %s
    tcp-request inspect-delay 5s
    tcp-request content accept if { req_ssl_hello_type 1 }
    use_backend tls_b if { req.ssl_sni -i %s }

backend tls_b
    server s1 %s
`, p.tls.ecdsa, p.tls.ecdsaPEM, p.tls.rsa, p.tls.rsaPEM, p.tls.sni, tlsName, p.tls.backend.addr())
}

// nginxTLS renders nginx's stream TLS servers (inside the stream block):
// ssl on the listen (1.22 offers no TLS 1.3 unless told), and ssl_preread
// with a map of server names.
func nginxTLS(p proxyParams) string {
	if p.tls == nil {
		return ""
	}
	s := ""
	for _, l := range []struct {
		addr string
		pair certs.Pair
	}{{p.tls.ecdsa, p.tls.tlsBench.ecdsa}, {p.tls.rsa, p.tls.tlsBench.rsa}} {
		s += fmt.Sprintf(`
    server {
        listen %s ssl reuseport;
        ssl_certificate %s;
        ssl_certificate_key %s;
        ssl_protocols TLSv1.2 TLSv1.3;
        proxy_pass b;
        proxy_connect_timeout %s;
        proxy_timeout %s;
    }
`, l.addr, l.pair.CertFile, l.pair.KeyFile, connectTimeout, idleTimeout)
	}
	return s + fmt.Sprintf(`
    upstream tls_b {
        server %s;
    }
    map $ssl_preread_server_name $sni_upstream {
        %s tls_b;
        default 127.0.0.1:1;
    }
    server {
        listen %s reuseport;
        ssl_preread on;
        proxy_pass $sni_upstream;
        proxy_connect_timeout %s;
        proxy_timeout %s;
    }
`, p.tls.backend.addr(), tlsName, p.tls.sni, connectTimeout, idleTimeout)
}
