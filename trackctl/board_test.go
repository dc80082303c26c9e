package trackctl

import (
	"bufio"
	"context"
	"errors"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/trackrouter/trackrouter/internal/board"
	"github.com/trackrouter/trackrouter/internal/fleet"
)

// startBoard serves a board of client's namespace shop until the test ends.
func startBoard(t *testing.T, client kubernetes.Interface) *httptest.Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := board.New(client, "shop", fleet.Options{MinEndpoints: 2})
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(b.Handler())
	t.Cleanup(func() { srv.Close(); cancel() })
	return srv
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestBoardGolden: the overview and a service's page of the status tests'
// fake cluster equal their golden files (go test ./trackctl -short -run
// TestBoardGolden -update rewrites them), so layout changes are reviewed.
func TestBoardGolden(t *testing.T) {
	srv := startBoard(t, fake.NewClientset(statusObjects(t)...))
	for _, tc := range []struct{ path, file string }{
		{"/", "overview.html"},
		{"/service/shop/account-service", "account-service.html"},
	} {
		code, body := get(t, srv.URL+tc.path)
		if code != http.StatusOK {
			t.Fatalf("%s: %d\n%s", tc.path, code, body)
		}
		body = updatedRE.ReplaceAllString(body, `Updated <time datetime="TIME">TIME</time>`)
		file := filepath.Join("../testdata/trackctl/board", tc.file)
		if *update {
			os.MkdirAll(filepath.Dir(file), 0o755)
			os.WriteFile(file, []byte(body), 0o644)
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("%v (go test ./trackctl -short -run TestBoardGolden -update writes it)", err)
		}
		if diff := cmp.Diff(string(want), body); diff != "" {
			t.Errorf("%s (-golden +got):\n%s", tc.path, diff)
		}
	}
	_, body := get(t, srv.URL+"/")
	for _, want := range []string{"canary: 1 ready endpoint, want at least 2", "FAILING", "account-service-canary-0.2.1", "FREE 10.0%"} {
		if !strings.Contains(body, want) {
			t.Errorf("the overview does not say %q", want)
		}
	}
}

// updatedRE is the pages' time of their last update (a golden file's
// TIME).
var updatedRE = regexp.MustCompile(`Updated <time datetime="[^"]*">[^<]*</time>`)

// TestBoardShowsTextNeverRunsIt: a history entry and a spec comment with
// markup are shown as text.
func TestBoardShowsTextNeverRunsIt(t *testing.T) {
	objs := statusObjects(t)
	for _, o := range objs {
		if cm, ok := o.(*corev1.ConfigMap); ok && cm.Name == "account-service" {
			cm.Annotations = map[string]string{"trackrouter.dev/history": `[{"time":"2026-11-27T12:00:00Z","user":"<img src=x onerror=alert(1)>","command":"trackctl deploy","reason":"<script>alert(2)</script>","changes":["tracks.internal.version 1->2"]}]`}
			cm.Data["service.yaml"] = "# </pre><script>alert(3)</script>\n" + cm.Data["service.yaml"]
		}
	}
	srv := startBoard(t, fake.NewClientset(objs...))
	_, body := get(t, srv.URL+"/service/shop/account-service")
	if regexp.MustCompile(`<script>alert|<img src=x`).MatchString(body) {
		t.Errorf("markup from the cluster reached the page as markup:\n%s", body)
	}
	for _, want := range []string{"&lt;script&gt;alert(2)&lt;/script&gt;", "&lt;img src=x onerror=alert(1)&gt;", "&lt;/pre&gt;&lt;script&gt;alert(3)"} {
		if !strings.Contains(body, want) {
			t.Errorf("not shown as text: %s", want)
		}
	}
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
}

func TestBoardUnknownService(t *testing.T) {
	srv := startBoard(t, fake.NewClientset(statusObjects(t)...))
	code, body := get(t, srv.URL+"/service/shop/nope")
	if code != http.StatusNotFound || !strings.Contains(body, "No service nope in namespace shop") {
		t.Errorf("%d\n%s", code, body)
	}
}

// TestBoardPushesChanges: a change in the cluster reaches an open page as
// a server-sent event, and the fragment it fetches then shows it.
func TestBoardPushesChanges(t *testing.T) {
	client := fake.NewClientset(statusObjects(t)...)
	srv := startBoard(t, client)
	resp, err := http.Get(srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	events := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "event: ") {
				events <- sc.Text()
			}
		}
	}()
	// The first lists' events settle into one evaluation: drain it.
	time.Sleep(500 * time.Millisecond)
	for len(events) > 0 {
		<-events
	}
	cm, err := client.CoreV1().ConfigMaps("shop").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["service.yaml"] = strings.Replace(cm.Data["service.yaml"], "2026.11.1", "2026.12.3", 1)
	if _, err := client.CoreV1().ConfigMaps("shop").Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		if ev != "event: change" {
			t.Errorf("event %q", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s of the change")
	}
	if _, body := get(t, srv.URL+"/fragment/overview"); !strings.Contains(body, "2026.12.3") {
		t.Errorf("the fragment does not show the new version")
	}
}

// TestBoardSaysAPILost: a watch the API refuses is said on the page.
func TestBoardSaysAPILost(t *testing.T) {
	client := fake.NewClientset(statusObjects(t)...)
	var failing atomic.Bool
	client.PrependWatchReactor("pods", func(k8stesting.Action) (bool, watch.Interface, error) {
		if failing.Load() {
			return true, nil, errors.New("connection refused (the test's API)")
		}
		return false, nil, nil
	})
	failing.Store(true)
	srv := startBoard(t, client) // the lists work: the caches sync
	var body string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		_, body = get(t, srv.URL+"/fragment/overview")
		if strings.Contains(body, "API connection lost") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(body, "API connection lost") || !strings.Contains(body, "connection refused (the test&#39;s API)") {
		t.Errorf("the page does not say the API is lost:\n%s", body)
	}
}

// TestBoardFlagsRefused: odd flags are usage errors, said before any
// API request (no kubeconfig needed to hear them).
func TestBoardFlagsRefused(t *testing.T) {
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "none"))
	for args, want := range map[string]string{
		"--samples bogus":       `--samples "bogus": want proxy, direct or off`,
		"--samples-every 100ms": "--samples-every 100ms: want at least 1s",
		"--samples-every -5s":   "--samples-every -5s: want at least 1s",
	} {
		code, _, stderr := run(t, append([]string{"board"}, strings.Fields(args)...)...)
		if code != ExitUsage || !strings.Contains(stderr, want) {
			t.Errorf("board %s: exit %d, %q; want exit %d and %q", args, code, stderr, ExitUsage, want)
		}
	}
}

// TestBoardRefusesForeignHost: trackctl board answers a request whose
// Host is an IP address, localhost or a name given with --allow-host, and
// refuses any other (a page served under a name of its own that resolves
// to the board's address: DNS rebinding).
func TestBoardRefusesForeignHost(t *testing.T) {
	o := &boardOptions{client: fake.NewClientset(statusObjects(t)...), samples: "off", allowHosts: []string{"screen.example.com"}}
	o.kube.namespace = "shop"
	a := serveBoard(t, o)
	_, port, _ := net.SplitHostPort(a)
	for host, want := range map[string]int{
		"127.0.0.1:" + port: http.StatusOK, "localhost:" + port: http.StatusOK, "LOCALHOST": http.StatusOK, "[::1]:" + port: http.StatusOK,
		"screen.example.com:" + port: http.StatusOK, "rebind.attacker.example:" + port: http.StatusMisdirectedRequest, "localhost.attacker.example": http.StatusMisdirectedRequest,
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+a+"/", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %s: %d, want %d", host, resp.StatusCode, want)
		}
	}
}

// serveBoard runs trackctl board with o on a free loopback port until the
// test ends, and returns its address once it serves.
func serveBoard(t *testing.T, o *boardOptions) string {
	t.Helper()
	addr := make(chan string, 1)
	done := make(chan error, 1)
	o.addr, o.ready = "127.0.0.1:0", func(a string) { addr <- a }
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		e := &env{name: "trackctl", stdout: &strings.Builder{}, stderr: &strings.Builder{}}
		done <- e.runBoard(ctx, o)
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case a := <-addr:
		return a
	case err := <-done:
		done <- err // for the cleanup
		t.Fatalf("board: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the board did not start")
	}
	return ""
}

// boardAction presses a service page's button: it reads the page (as a
// browser would, the token with it) and posts the button's form; token
// "" posts without the page's token, as another site's page would.
func boardAction(t *testing.T, addr, ns, service, label string, withToken bool) (int, string) {
	t.Helper()
	_, page := get(t, "http://"+addr+"/service/"+ns+"/"+service)
	var form url.Values
	for _, f := range strings.Split(page, "<form ")[1:] {
		f = f[:strings.Index(f, "</form>")]
		if !strings.Contains(f, ">"+label+"</button>") {
			continue
		}
		form = url.Values{}
		for _, in := range strings.Split(f, "<input ")[1:] {
			name := between(in, `name="`, `"`)
			form.Set(name, html.UnescapeString(between(in, `value="`, `"`)))
		}
	}
	if form == nil {
		t.Fatalf("no button %q on the page of %s:\n%s", label, service, page)
	}
	if !withToken {
		form.Del("token")
	}
	resp, err := http.PostForm("http://"+addr+"/act/"+ns+"/"+service, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, html.UnescapeString(string(b))
}

func between(s, from, to string) string {
	i := strings.Index(s, from)
	if i < 0 {
		return ""
	}
	s = s[i+len(from):]
	if j := strings.Index(s, to); j >= 0 {
		return s[:j]
	}
	return s
}
