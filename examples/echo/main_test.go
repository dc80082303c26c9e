package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestBadBuild: with 2 percent, exactly every 50th answer is a 500 naming
// the build; probes never fail.
func TestBadBuild(t *testing.T) {
	h := answer("track=canary version=1.2.0", 2, 0)
	failed := 0
	for i := 1; i <= 500; i++ {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		probe := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("User-Agent", "kube-probe/1.35")
		h.ServeHTTP(probe, req)
		if probe.Code != http.StatusOK {
			t.Fatalf("a probe answered %d", probe.Code)
		}
		if rec.Code == http.StatusInternalServerError {
			failed++
			if i%50 != 0 || rec.Body.String() != "error from track=canary version=1.2.0\n" {
				t.Errorf("request %d: 500 %q", i, rec.Body)
			}
		}
	}
	if failed != 10 {
		t.Errorf("%d of 500 failed, want 10", failed)
	}
}

// TestSlowBuild: every answer waits the delay but a probe's.
func TestSlowBuild(t *testing.T) {
	h := answer("track=canary version=1.3.0", 0, 30*time.Millisecond)
	start := time.Now()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if took := time.Since(start); took < 30*time.Millisecond || rec.Code != http.StatusOK {
		t.Errorf("answered %d in %s, want 200 after 30ms", rec.Code, took)
	}
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("User-Agent", "kube-probe/1.35")
	start = time.Now()
	h.ServeHTTP(httptest.NewRecorder(), req)
	if took := time.Since(start); took >= 30*time.Millisecond {
		t.Errorf("a probe waited %s", took)
	}
}
