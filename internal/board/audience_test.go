package board

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trackrouter/trackrouter/internal/fleet"
	"github.com/trackrouter/trackrouter/weights"
)

// TestAudienceAndStageOrder: the overview names who each backend serves
// by its groups ("FREE"), the default as "others"; the service page lists
// tracks in the spec's stage order, not alphabetically.
func TestAudienceAndStageOrder(t *testing.T) {
	s, err := weights.ParseService(weights.Source{}, []byte(`service: web
port: 80
tracks:
  internal:   {version: "1", replicas: 1}
  canary:     {version: "1", replicas: 1}
  production: {version: "1", replicas: 1}
groups: {INTERNAL: internal, FREE: free, TRIAL: free}
default: main
backends:
  internal: {internal: 100}
  free:     {canary: 5, production: 95}
  main:     {production: 100}
  spare:    {production: 100}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"internal": "INTERNAL", "free": "FREE, TRIAL", "main": "others"}
	if diff := cmp.Diff(want, audienceOf(s)); diff != "" {
		t.Errorf("audiences (-want +got):\n%s", diff)
	}
	tracks := []fleet.TrackHealth{{Name: "canary"}, {Name: "internal"}, {Name: "old"}, {Name: "production"}}
	var got []string
	for _, tr := range inStageOrder(tracks, s.Stages) {
		got = append(got, tr.Name)
	}
	if diff := cmp.Diff([]string{"internal", "canary", "production", "old"}, got); diff != "" {
		t.Errorf("track order (-want +got):\n%s", diff)
	}
}
