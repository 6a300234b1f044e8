module sluice

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/hashicorp/go-sockaddr v1.0.7
	golang.org/x/net v0.62.0
	golang.org/x/sys v0.50.0
)

require github.com/hashicorp/errwrap v1.1.0 // indirect
