// Package speccorpus is the project's corpus of bad specs: each a valid
// base spec with one edit, and the errors (line, field, part of the
// message) it must give. weights' tests check the parser against it, the
// admission webhook's tests check that the API server refuses every one.
package speccorpus

import "strings"

// Base is a valid bare spec; the lines in Bad refer to it.
const Base = `service: account-service
port: 8080
header: X-Traffic-Group
tracks:
  internal:   {version: v1.18.0, replicas: 2}
  canary:     {version: v1.17.0, replicas: 4}
  paid:       {version: v1.15.0}
  production: {version: v1.15.0, replicas: 10}
groups:
  INTERNAL: internal
  FREE: canary
  ENTERPRISE: enterprise
default: paid
backends:
  internal:   {internal: 100}
  canary:     {canary: 5, production: 95}
  paid:       {paid: 5, production: 95}
  enterprise: {production: 100}
`

// Want is one error a bad spec must give.
type Want struct {
	Line  int    // 0: any line (a YAML syntax error)
	Field string // the field's path
	Msg   string // a part of the message
}

// Case is a bad spec: Base with Old replaced by New.
type Case struct {
	Name, Old, New string
	Want           []Want
}

// Spec is the case's spec text; "" when Base has no Old.
func (c Case) Spec() string {
	if !strings.Contains(Base, c.Old) {
		return ""
	}
	return strings.Replace(Base, c.Old, c.New, 1)
}

// Bad is the corpus.
var Bad = []Case{
	{"unknown field", "port: 8080\n", "port: 8080\nprot: 1\n", []Want{{3, "prot", "unknown field"}}},
	{"affinity empty", "port: 8080\n", "port: 8080\naffinity: {}\n", []Want{{3, "affinity", "set exactly one of cookie"}}},
	{"affinity both", "port: 8080\n", "port: 8080\naffinity: {cookie: tr, header: X-User}\n", []Want{{3, "affinity", "exclude each other"}}},
	{"affinity unknown field", "port: 8080\n", "port: 8080\naffinity: {cookie: tr, path: /}\n", []Want{{3, "affinity.path", "unknown field"}}},
	{"affinity cookie with space", "port: 8080\n", "port: 8080\naffinity: {cookie: \"a b\"}\n", []Want{{3, "affinity.cookie", "not a cookie name"}}},
	{"affinity cookie with semicolon", "port: 8080\n", "port: 8080\naffinity: {cookie: \"a;b\"}\n", []Want{{3, "affinity.cookie", "not a cookie name"}}},
	{"affinity header with colon", "port: 8080\n", "port: 8080\naffinity:\n  header: \"X:User\"\n", []Want{{4, "affinity.header", "not a header name"}}},
	{"affinity maxAge negative", "port: 8080\n", "port: 8080\naffinity: {cookie: tr, maxAge: -1}\n", []Want{{3, "affinity.maxAge", "want seconds"}}},
	{"affinity maxAge string", "port: 8080\n", "port: 8080\naffinity: {cookie: tr, maxAge: 1h}\n", []Want{{3, "affinity.maxAge", "want an integer"}}},
	{"affinity secure not bool", "port: 8080\n", "port: 8080\naffinity: {cookie: tr, secure: yes}\n", []Want{{3, "affinity.secure", "want true or false"}}},
	{"affinity on the group header", "port: 8080\n", "port: 8080\naffinity: {header: x-traffic-group}\n", []Want{{3, "affinity.header", "the same for many users"}}},
	{"affinity header with maxAge", "port: 8080\n", "port: 8080\naffinity: {header: X-User, maxAge: 60}\n", []Want{{3, "affinity", "cookie attributes"}}},
	{"unknown track field", "{version: v1.18.0, replicas: 2}", "{version: v1.18.0, replica: 2}", []Want{{5, "tracks.internal.replica", "unknown field"}}},
	{"duplicate key", "port: 8080\n", "port: 8080\nport: 8081\n", []Want{{3, "port", "duplicate key"}}},
	{"duplicate track", "  paid:       {version: v1.15.0}\n", "  paid: {version: v1}\n  paid: {version: v2}\n", []Want{{8, "tracks.paid", "duplicate key"}}},
	{"service missing", "service: account-service\n", "", []Want{{1, "service", "required"}}},
	{"service not dns-1035", "service: account-service", "service: Account_Service", []Want{{1, "service", "DNS-1035"}}},
	{"service starts with digit", "service: account-service", "service: 1account", []Want{{1, "service", "DNS-1035"}}},
	{"service with newline", "service: account-service", "service: \"a\\nb\"", []Want{{1, "service", "DNS-1035"}}},
	{"derived service name too long", "service: account-service", "service: " + strings.Repeat("a", 55), []Want{
		{5, "tracks.internal", "longer than 63"}, {8, "tracks.production", "longer than 63"}}},
	{"port missing", "port: 8080\n", "", []Want{{1, "port", "required"}}},
	{"port out of range", "port: 8080", "port: 70000", []Want{{2, "port", "out of range 1-65535"}}},
	{"port zero", "port: 8080", "port: 0", []Want{{2, "port", "out of range 1-65535"}}},
	{"port is a string", "port: 8080", "port: \"8080\"", []Want{{2, "port", "want an integer"}}},
	{"port is hex", "port: 8080", "port: 0x1F90", []Want{{2, "port", "decimal integer"}}},
	{"header with space", "header: X-Traffic-Group", "header: X Traffic", []Want{{3, "header", "not a header name"}}},
	{"header with hash", "header: X-Traffic-Group", "header: \"X#Group\"", []Want{{3, "header", "not a header name"}}},
	{"header with quote", "header: X-Traffic-Group", "header: X'Group", []Want{{3, "header", "not a header name"}}},
	{"header empty", "header: X-Traffic-Group", "header: \"\"", []Want{{3, "header", "not a header name"}}},
	{"track name not dns-1035", "  paid:       {version: v1.15.0}", "  Paid:       {version: v1.15.0}", []Want{
		{7, "tracks.Paid", "not a DNS-1035 label"}, {17, "backends.paid.paid", "not defined under tracks"}}},
	{"version missing", "{version: v1.18.0, replicas: 2}", "{replicas: 2}", []Want{{5, "tracks.internal.version", "required"}}},
	{"version uppercase", "v1.18.0", "V1.18.0", []Want{{5, "tracks.internal.version", "not a valid version"}}},
	{"version with space", "v1.18.0", "\"v1 18\"", []Want{{5, "tracks.internal.version", "not a valid version"}}},
	{"version with hash", "v1.18.0", "\"v1#18\"", []Want{{5, "tracks.internal.version", "not a valid version"}}},
	{"version double dot", "v1.18.0", "v1..0", []Want{{5, "tracks.internal.version", "Deployment name"}}},
	{"replicas negative", "replicas: 10", "replicas: -1", []Want{{8, "tracks.production.replicas", "0 or more"}}},
	{"router replicas negative", "port: 8080\n", "port: 8080\nrouter: {replicas: -2}\n", []Want{{3, "router.replicas", "0 or more"}}},
	{"address without port", "{version: v1.15.0}", "{version: v1.15.0, address: 127.0.0.1}", []Want{{7, "tracks.paid.address", "host:port"}}},
	{"address bad port", "{version: v1.15.0}", "{version: v1.15.0, address: \"127.0.0.1:0\"}", []Want{{7, "tracks.paid.address", "1-65535"}}},
	{"address with space", "{version: v1.15.0}", "{version: v1.15.0, address: \"a b:80\"}", []Want{{7, "tracks.paid.address", "not an IP address"}}},
	{"address with hash", "{version: v1.15.0}", "{version: v1.15.0, address: \"a#b:80\"}", []Want{{7, "tracks.paid.address", "not an IP address"}}},
	{"no tracks", "tracks:\n", "tracks: {}\nx-tracks:\n", []Want{{5, "x-tracks", "unknown field"}}},
	{"group names missing backend", "FREE: canary", "FREE: canry", []Want{{11, "groups.FREE", `backend "canry" is not defined`}}},
	{"group with space", "  FREE: canary", "  \"FR EE\": canary", []Want{{11, "groups.FR EE", "use letters, digits"}}},
	{"group with newline", "  FREE: canary", "  \"FR\\nEE\": canary", []Want{{11, "groups.FR\nEE", "use letters, digits"}}},
	{"group too long", "  FREE: canary", "  " + strings.Repeat("F", 64) + ": canary", []Want{{11, "groups." + strings.Repeat("F", 64), "at most 63"}}},
	{"groups equal ignoring case", "  FREE: canary", "  FREE: canary\n  free: paid", []Want{{12, "groups.free", `same as "FREE"`}}},
	{"default missing", "default: paid\n", "", []Want{{1, "default", "required"}}},
	{"default names missing backend", "default: paid", "default: gold", []Want{{13, "default", `backend "gold" is not defined`}}},
	{"weight out of range", "canary: 5,", "canary: 300,", []Want{{16, "backends.canary.canary", "weight 300 is out of range 0-256"}}},
	{"weight negative", "canary: 5,", "canary: -1,", []Want{{16, "backends.canary.canary", "out of range 0-256"}}},
	{"weight not an integer", "canary: 5,", "canary: 5.5,", []Want{{16, "backends.canary.canary", "want an integer 0-256"}}},
	{"weight too long for an int", "canary: 5,", "canary: 99999999999999999999,", []Want{{16, "backends.canary.canary", `"99999999999999999999" is out of range: want an integer 0-256`}}},
	{"port too long for an int", "port: 8080", "port: -99999999999999999999", []Want{{2, "port", `"-99999999999999999999" is out of range: want an integer 1-65535`}}},
	{"weight names missing track", "canary: 5,", "gamma: 5,", []Want{{16, "backends.canary.gamma", `track "gamma" is not defined`}}},
	{"backend all zero", "{production: 100}\n", "{production: 0}\n", []Want{{18, "backends.enterprise", "at least one track with a weight above 0"}}},
	{"backend empty", "{production: 100}\n", "{}\n", []Want{{18, "backends.enterprise", "at least one track with a weight above 0"}}},
	{"backend name not dns-1035", "  enterprise: {production: 100}", "  enterprise: {production: 100}\n  Gold_1: {production: 1}", []Want{{19, "backends.Gold_1", "DNS-1035"}}},
	{"tracks is a list", "tracks:\n", "tracks: []\nx:\n", []Want{{4, "tracks", "want a mapping"}, {5, "x", "unknown field"}}},
	{"alias", "port: 8080", "port: &p 8080\nx: *p", []Want{{2, "", "anchors and aliases are not allowed"}}},
	{"merge key", "  paid:       {version: v1.15.0}", "  paid:       {<<: {version: v1}}", []Want{{7, "", "merge keys"}}},
	{"syntax error", "port: 8080", "port: [8080", []Want{{0, "", "invalid YAML"}}},
}
