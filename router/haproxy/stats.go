package haproxy

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/trackrouter/trackrouter/haproxyconf"
)

// ServerStats are one server's (one track's, in one backend) counters, as
// HAProxy's current worker counted them since it started: exact, unlike the
// averages HAProxy keeps of the last 1,024 requests. They are the counts of
// the canary analysis; a new worker starts them again from 0.
type ServerStats struct {
	Requests   int64 // req_tot: HTTP requests sent to the server
	Status5xx  int64 // hrsp_5xx: 5xx responses from it
	ConnErrors int64 // econ: connections to it that failed (not in Requests)
	RespErrors int64 // eresp: responses from it that failed (reset, timeout)
	Retries    int64 // wretr: connection attempts retried
}

// ServerStats reads every server's counters from the current worker
// (show stat, servers only).
func (m *MasterCLI) ServerStats(ctx context.Context) (map[haproxyconf.ServerKey]ServerStats, error) {
	out, err := m.Command(ctx, "@1 show stat -1 4 -1")
	if err != nil {
		return nil, err
	}
	return ParseServerStats(out)
}

// ParseServerStats reads the server rows of show stat's CSV, by the names
// in its header line (their order changes between HAProxy versions).
func ParseServerStats(out string) (map[haproxyconf.ServerKey]ServerStats, error) {
	lines := strings.Split(out, "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "# ") {
		return nil, fmt.Errorf("show stat: no header line in %q", clip(out))
	}
	col := make(map[string]int)
	for i, name := range strings.Split(strings.TrimPrefix(lines[0], "# "), ",") {
		col[name] = i
	}
	for _, name := range []string{"pxname", "svname", "req_tot", "hrsp_5xx", "econ", "eresp", "wretr"} {
		if _, ok := col[name]; !ok {
			return nil, fmt.Errorf("show stat: no column %s in its header", name)
		}
	}
	stats := make(map[haproxyconf.ServerKey]ServerStats)
	for _, line := range lines[1:] {
		f := strings.Split(line, ",")
		if len(f) < len(col) {
			continue
		}
		if sv := f[col["svname"]]; sv == "FRONTEND" || sv == "BACKEND" {
			continue
		}
		n := func(name string) int64 {
			v, _ := strconv.ParseInt(f[col[name]], 10, 64) // an empty field is 0
			return v
		}
		stats[haproxyconf.ServerKey{Backend: f[col["pxname"]], Server: f[col["svname"]]}] = ServerStats{
			Requests: n("req_tot"), Status5xx: n("hrsp_5xx"), ConnErrors: n("econ"), RespErrors: n("eresp"), Retries: n("wretr"),
		}
	}
	return stats, nil
}
