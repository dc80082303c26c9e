module github.com/trackrouter/trackrouter

go 1.26

require (
	github.com/haproxytech/config-parser/v5 v5.1.6
	github.com/spf13/pflag v1.0.10
	go.yaml.in/yaml/v3 v3.0.4
)

require (
	github.com/gofrs/flock v0.8.1 // indirect
	github.com/google/go-cmp v0.7.0 // indirect
	github.com/google/renameio v1.0.1 // indirect
	github.com/haproxytech/go-logger v1.1.0 // indirect
	github.com/kr/text v0.2.0 // indirect
	github.com/rogpeppe/go-internal v1.16.0 // indirect
	golang.org/x/sys v0.26.0 // indirect
)
