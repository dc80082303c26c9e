package trackctl

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trackrouter/trackrouter/weights"
)

// The release commands' decisions, without cobra, a file or a cluster.

const planSpec = `service: account-service
port: 8080
tracks:
  internal:   {version: 1.2.0}
  canary:     {version: 1.1.0}
  paid:       {version: 1.0.0}
  production: {version: 1.0.0}
groups:
  INTERNAL: internal
  FREE: canary
default: paid
backends:
  internal: {internal: 100}
  canary:   {canary: 5, production: 95}
  paid:     {paid: 5, production: 95}
`

func TestPlanners(t *testing.T) {
	spec, err := weights.ParseService(weights.Source{File: "service.yaml"}, []byte(planSpec))
	if err != nil {
		t.Fatal(err)
	}
	only := func(backend, track string, w int) planner {
		return planSetWeight(backend, []string{track}, map[string]string{track: string(rune('0' + w))})
	}
	for _, tc := range []struct {
		name    string
		plan    planner
		want    []edit
		wantErr string
	}{
		{"deploy: the first stage", planDeploy("1.3.0"), []edit{{Path: []string{"tracks", "internal", "version"}, Value: "1.3.0"}}, ""},
		{"promote: the stage after the last that runs it", planPromote("1.1.0", ""), []edit{{Path: []string{"tracks", "paid", "version"}, Value: "1.1.0"}}, ""},
		{"promote: a version already on the last stage", planPromote("1.0.0", ""), nil, "version 1.0.0 already runs on the last stage, production"},
		{"promote: a version nowhere", planPromote("9.9.9", ""), nil, "version 9.9.9 runs on no track of account-service (internal 1.2.0, canary 1.1.0, paid 1.0.0, production 1.0.0): deploy it first"},
		{"promote --to", planPromote("1.2.0", "production"), []edit{{Path: []string{"tracks", "production", "version"}, Value: "1.2.0"}}, ""},
		{"promote --to an unknown track", planPromote("1.2.0", "beta"), nil, "--to beta: service account-service has no such track (stages: internal, canary, paid, production)"},
		{"set-weight", planSetWeight("canary", []string{"production", "canary"}, map[string]string{"canary": "10", "production": "90"}),
			[]edit{{Path: []string{"backends", "canary", "production"}, Value: "90"}, {Path: []string{"backends", "canary", "canary"}, Value: "10"}}, ""},
		{"set-weight: an unknown backend", only("beta", "canary", 1), nil, "service account-service has no backend beta (backends: canary, internal, paid)"},
		{"set-weight: a track not in the backend", only("internal", "canary", 1), nil, "backend internal has no server for track canary (it has: internal): add it to the spec first"},
		{"rollback: every backend with the track", planRollback("production", ""),
			[]edit{{Path: []string{"backends", "canary", "production"}, Value: "0"}, {Path: []string{"backends", "paid", "production"}, Value: "0"}}, ""},
		{"rollback --version", planRollback("canary", "1.0.0"),
			[]edit{{Path: []string{"backends", "canary", "canary"}, Value: "0"}, {Path: []string{"tracks", "canary", "version"}, Value: "1.0.0"}}, ""},
		{"rollback: a backend left with nothing", planRollback("internal", ""), nil, "backend internal would have no track with a weight above 0 without internal"},
		{"rollback: an unknown track", planRollback("beta", ""), nil, "service account-service has no track beta"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.plan(spec)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("want an error containing %q, got %v (edits %v)", tc.wantErr, err, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(edit{})); diff != "" {
				t.Errorf("edits (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWeightArgs(t *testing.T) {
	order, weightOf, err := weightArgs([]string{"production=090", "canary=+10"})
	if err != nil || !cmp.Equal(order, []string{"production", "canary"}) || !cmp.Equal(weightOf, map[string]string{"production": "90", "canary": "10"}) {
		t.Errorf("got %v %v %v", order, weightOf, err)
	}
	for _, bad := range [][]string{{"canary"}, {"=5"}, {"canary=five"}, {"canary=1", "canary=2"}} {
		var ue usageError
		if _, _, err := weightArgs(bad); !errors.As(err, &ue) {
			t.Errorf("%q: want a usage error, got %v", bad, err)
		}
	}
}
