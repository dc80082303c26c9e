package board

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/trackrouter/trackrouter/internal/fleet"
	"github.com/trackrouter/trackrouter/internal/pipeline"
)

// TestActionsRefused: a board that only reads runs nothing; on one that
// offers actions, a request from another site, one without this run's
// token and one by GET are refused before anything runs.
func TestActionsRefused(t *testing.T) {
	var ran []string
	run := func(_ context.Context, args []string) (string, error) {
		ran = append(ran, strings.Join(args, " "))
		return "", nil
	}
	post := func(b *Board, form url.Values, site string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/act/shop/web", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if site != "" {
			req.Header.Set("Sec-Fetch-Site", site)
		}
		w := httptest.NewRecorder()
		b.Handler().ServeHTTP(w, req)
		return w
	}
	readOnly := New(fake.NewClientset(), "shop", fleet.Options{})
	if w := post(readOnly, url.Values{"action": {"abort"}}, ""); w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "only reads") {
		t.Errorf("a board that only reads: %d %s", w.Code, w.Body)
	}
	b := New(fake.NewClientset(), "shop", fleet.Options{})
	b.Offer(run)
	if len(b.token) < 32 {
		t.Fatalf("token %q: want at least 128 random bits", b.token)
	}
	for _, tc := range []struct {
		name string
		form url.Values
		site string
		code int
		says string
	}{
		{"another site's page", url.Values{"token": {b.token}, "action": {"abort"}}, "cross-site", http.StatusForbidden, "another site"},
		{"no token", url.Values{"action": {"abort"}}, "", http.StatusForbidden, "no token of this board's run"},
		{"a wrong token", url.Values{"token": {strings.Repeat("0", len(b.token))}, "action": {"abort"}}, "same-origin", http.StatusForbidden, "no token"},
		{"a service not shown", url.Values{"token": {b.token}, "action": {"abort"}}, "same-origin", http.StatusNotFound, "no service web in shop"},
	} {
		if w := post(b, tc.form, tc.site); w.Code != tc.code || !strings.Contains(w.Body.String(), tc.says) {
			t.Errorf("%s: %d %q; want %d saying %q", tc.name, w.Code, w.Body, tc.code, tc.says)
		}
	}
	w := httptest.NewRecorder()
	b.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/act/shop/web?token="+b.token+"&action=abort", nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", w.Code)
	}
	if len(ran) > 0 {
		t.Errorf("ran %q", ran)
	}
}

// TestActionsFor: the buttons follow the release's phase.
func TestActionsFor(t *testing.T) {
	names := func(r *pipeline.Status) string {
		var out []string
		for _, a := range actionsFor(r) {
			out = append(out, strings.TrimSpace(a.Name+" "+a.Arg))
		}
		return strings.Join(out, ", ")
	}
	for _, tc := range []struct {
		r    *pipeline.Status
		want string
	}{
		{nil, ""},
		{&pipeline.Status{Phase: pipeline.Gates, Stage: "internal", Version: "1.1"}, "approve, promote 1.1, pause, abort, rollback internal"},
		{&pipeline.Status{Phase: pipeline.Baking, Stage: "canary", Version: "1.1", Paused: "by x at t"}, "promote 1.1, resume, abort, rollback canary"},
		{&pipeline.Status{Phase: pipeline.Done, Stage: "production", Version: "1.1"}, ""},
		{&pipeline.Status{Phase: pipeline.RolledBack, Stage: "canary", Version: "1.1"}, ""},
	} {
		if got := names(tc.r); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.r, got, tc.want)
		}
	}
}
