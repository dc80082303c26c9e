package weights

// The fields the decoder knows, by where they live: the one list the
// decoder refuses unknown keys by, and the documentation's field table is
// checked against (FieldPaths).
var (
	topFields      = []string{"service", "port", "header", "template", "router", "tracks", "groups", "default", "backends", "affinity", "trustedSources"}
	routerFields   = []string{"replicas"}
	trackFields    = []string{"version", "replicas", "address", "analysis", "gates"}
	analysisFields = []string{"bake", "interval", "minRequests", "maxErrorIncrease", "maxP95Increase", "maxP99Increase", "lowTraffic"}
	affinityFields = []string{"cookie", "maxAge", "secure", "header"}
)

// FieldPaths lists every field of a spec, as the documentation writes
// them: maps of the user's names as <track>, <VALUE>, <backend>; a field
// with fields of its own both as itself and with each of them.
func FieldPaths() []string {
	var out []string
	for _, f := range topFields {
		switch f {
		case "router":
			for _, r := range routerFields {
				out = append(out, "router."+r)
			}
		case "tracks":
			out = append(out, "tracks.<track>")
			for _, t := range trackFields {
				out = append(out, "tracks.<track>."+t)
				if t == "analysis" {
					for _, a := range analysisFields {
						out = append(out, "tracks.<track>.analysis."+a)
					}
				}
			}
		case "groups":
			out = append(out, "groups.<VALUE>")
		case "backends":
			out = append(out, "backends.<backend>.<track>")
		case "affinity":
			out = append(out, "affinity")
			for _, a := range affinityFields {
				out = append(out, "affinity."+a)
			}
		default:
			out = append(out, f)
		}
	}
	return out
}
