package notify

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestWebhookEscapes: text people wrote (a reason, a Job's message)
// reaches Slack escaped: it mentions nobody and links nothing.
func TestWebhookEscapes(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]string
		json.NewDecoder(r.Body).Decode(&m)
		got = m["text"]
	}))
	defer srv.Close()
	if err := (Webhook{URL: srv.URL}).Send(context.Background(), Message{Text: "aborted: <!channel> see <http://x|here> & more"}); err != nil {
		t.Fatal(err)
	}
	if want := "aborted: &lt;!channel&gt; see &lt;http://x|here&gt; &amp; more"; got != want {
		t.Errorf("posted %q, want %q", got, want)
	}
}

// TestWebhookErrorHidesURL: a failed post names the webhook's host, not
// its path (the secret).
func TestWebhookErrorHidesURL(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	url := srv.URL + "/services/T0/B0/secret"
	srv.Close()
	err := (Webhook{URL: url}).Send(context.Background(), Message{Text: "x"})
	if err == nil || strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), strings.TrimPrefix(srv.URL, "http://")) {
		t.Errorf("error %v", err)
	}
}
