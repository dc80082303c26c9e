// Package board serves every service's health and release at a glance,
// in a browser: an overview and a page per service, judged (fleet.Evaluate)
// from informers' caches and pushed to every open page by server-sent
// events. trackctl board runs it on the user's credentials; track-controller
// can serve it read-only for a team screen.
package board

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/trackrouter/trackrouter/internal/fleet"
	"github.com/trackrouter/trackrouter/internal/health"
	"github.com/trackrouter/trackrouter/internal/pipeline"
	"github.com/trackrouter/trackrouter/internal/release"
	"github.com/trackrouter/trackrouter/weights"
)

//go:embed web
var files embed.FS

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"share": func(f float64) string { return fmt.Sprintf("%.1f%%", f) },
	"utc":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"clock": func(t time.Time) string { return t.UTC().Format("15:04:05 UTC") },
	// trackctl status's word, for people: ROLLED BACK.
	"health": func(h *fleet.Health) string { return strings.Replace(h.Word(), "ROLLEDBACK", "ROLLED BACK", 1) },
	"alarm":  func(h *fleet.Health) bool { return h.Alarm(time.Now()) },
	"live":   fleet.LiveWords,
	"now":    time.Now,
	// The release's decisions as the history: newest first.
	"newestFirst": func(ds []pipeline.Decision) []pipeline.Decision {
		out := slices.Clone(ds)
		slices.Reverse(out)
		return out
	},
	"add": func(a, b int) int { return a + b },
	"plotSpan": func(every time.Duration) string {
		switch span := every * plotPoints; {
		case span == time.Minute:
			return "minute"
		case span%time.Minute == 0:
			return fmt.Sprintf("%d minutes", span/time.Minute)
		default:
			return span.String()
		}
	},
}).ParseFS(files, "web/*.html"))

// Board keeps the fleet's health, judged from informers' caches, and
// tells every open page when it changes.
type Board struct {
	// hosts, when set, are the names a request's Host may have beside IP
	// literals and localhost (see AllowHosts).
	hosts     []string
	checkHost bool
	namespace string
	opt       fleet.Options
	factories []informers.SharedInformerFactory
	synced    []cache.InformerSynced
	objects   func() (fleet.Objects, error)
	dirty     chan struct{}

	mu      sync.Mutex
	healths []*fleet.Health
	specs   map[string]*corev1.ConfigMap // by namespace/service
	stages  map[string][]string          // by namespace/service: the tracks in the spec's order
	// audiences: by namespace/service, who each backend serves, in the
	// spec's words: its groups ("FREE"), "others" for the default.
	audiences map[string]map[string]string
	version   uint64 // bumped at each change
	updated   time.Time
	apiErr    string // the last watch error, while recent; "" once the API answers again
	// lastErr and lastErrAt are the last watch error: a broken watch
	// retries within 30 s (the reflector's longest backoff), so one
	// older than apiLost is over.
	lastErr   string
	lastErrAt time.Time
	subs      map[chan event]bool

	plots *plots // nil: no plots (Plot)

	// run, when set, runs the service pages' actions (Offer); token is
	// this run's, written into the pages and required on every action.
	run   Run
	token string
}

// event is what the board tells open pages: "change" when the fleet's
// state changed, "samples" with a service's key when its plots did.
type event struct{ name, data string }

func New(client kubernetes.Interface, ns string, opt fleet.Options) *Board {
	b := &Board{namespace: ns, opt: opt, dirty: make(chan struct{}, 1), specs: map[string]*corev1.ConfigMap{}, subs: map[chan event]bool{}}
	factory := func(sel string) informers.SharedInformerFactory {
		f := informers.NewSharedInformerFactoryWithOptions(client, 10*time.Minute, informers.WithNamespace(ns),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sel }))
		b.factories = append(b.factories, f)
		return f
	}
	specInf := factory(fleet.SelectSpecs).Core().V1().ConfigMaps()
	ownedInf := factory(fleet.SelectOwned).Core().V1().ConfigMaps()
	labelled := factory(fleet.SelectLabelled)
	depInf, sliceInf := labelled.Apps().V1().Deployments(), labelled.Discovery().V1().EndpointSlices()
	podInf := factory(fleet.SelectRouterPods).Core().V1().Pods()
	for _, inf := range []cache.SharedIndexInformer{specInf.Informer(), ownedInf.Informer(), depInf.Informer(), sliceInf.Informer(), podInf.Informer()} {
		inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { b.markDirty() },
			UpdateFunc: func(any, any) { b.markDirty() },
			DeleteFunc: func(any) { b.markDirty() },
		})
		inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
			b.mu.Lock()
			b.lastErr, b.lastErrAt = err.Error(), time.Now()
			b.mu.Unlock()
			b.markDirty()
		})
		b.synced = append(b.synced, inf.HasSynced)
	}
	b.objects = fleet.Listers{Specs: specInf.Lister(), Status: ownedInf.Lister(), Deployments: depInf.Lister(),
		EndpointSlices: sliceInf.Lister(), Pods: podInf.Lister()}.Objects
	return b
}

// Start lists and watches, and evaluates at every change (at most every
// 100 ms) until ctx ends.
func (b *Board) Start(ctx context.Context) error {
	for _, f := range b.factories {
		f.Start(ctx.Done())
	}
	if !cache.WaitForCacheSync(ctx.Done(), b.synced...) {
		return fmt.Errorf("the API did not answer the board's lists (%s)", namespaceWords(b.namespace))
	}
	b.evaluate()
	if b.plots != nil {
		go b.runPlots(ctx)
	}
	go func() {
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				for _, f := range b.factories {
					f.Shutdown()
				}
				return
			case <-b.dirty:
			case <-tick.C: // what depends on time: the API error's age
			}
			time.Sleep(100 * time.Millisecond) // a burst of events, one evaluation
			b.evaluate()
		}
	}()
	return nil
}

func (b *Board) markDirty() {
	select {
	case b.dirty <- struct{}{}:
	default:
	}
}

// evaluate judges the fleet from the caches and tells the pages.
func (b *Board) evaluate() {
	objs, err := b.objects()
	if err != nil {
		return
	}
	hs := fleet.Evaluate(objs, b.opt)
	specs, stages, audiences := map[string]*corev1.ConfigMap{}, map[string][]string{}, map[string]map[string]string{}
	for _, cm := range objs.Specs {
		key := cm.Namespace + "/" + cm.Labels[weights.ServiceLabel]
		specs[key] = cm
		if s, err := weights.ParseService(weights.Source{}, []byte(cm.Data[weights.DataKey])); err == nil {
			stages[key] = s.Stages
			audiences[key] = audienceOf(s)
		}
	}
	b.mu.Lock()
	b.healths, b.specs, b.stages, b.audiences = hs, specs, stages, audiences
	b.updated = time.Now()
	b.apiErr = ""
	if since := time.Since(b.lastErrAt); b.lastErr != "" && since < apiLost {
		b.apiErr = fmt.Sprintf("%s (%s ago)", b.lastErr, since.Round(time.Second))
	}
	b.version++
	b.mu.Unlock()
	b.tell("change", "")
}

// tell sends an event to every open page; a page that has not taken the
// last ones (its connection is stuck) misses it.
func (b *Board) tell(name, data string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- event{name, data}:
		default:
		}
	}
}

// health is the service's health, nil when it has no spec.
func (b *Board) health(key string) *fleet.Health {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, h := range b.healths {
		if h.Namespace+"/"+h.Service == key {
			return h
		}
	}
	return nil
}

// Serve serves the board's pages on ln until ctx ends (Start first).
// AllowHosts makes the board answer only requests whose Host is an IP
// address, localhost, or one of names: a web page the user's browser
// opens cannot read the board (with the user's credentials behind it)
// through a name of its own that resolves to the board's address (DNS
// rebinding).
func (b *Board) AllowHosts(names ...string) {
	b.checkHost, b.hosts = true, names
}

// hostAllowed reports whether a request's Host header may be answered.
func (b *Board) hostAllowed(host string) bool {
	if !b.checkHost {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if net.ParseIP(host) != nil || strings.EqualFold(host, "localhost") {
		return true
	}
	for _, n := range b.hosts {
		if strings.EqualFold(host, n) {
			return true
		}
	}
	return false
}

func (b *Board) Serve(ctx context.Context, ln net.Listener) error {
	return health.ServeUntil(ctx, &http.Server{Handler: b.Handler(), ReadHeaderTimeout: 5 * time.Second}, ln, false)
}

// apiLost is how long a watch error is shown after the last one.
const apiLost = 45 * time.Second

// boardState is what a page shows.
type boardState struct {
	Namespace string
	Healths   []*fleet.Health
	APIError  string
	// Updated is when the state was last judged from the API's objects.
	Updated   time.Time
	Stages    []string // the columns: every stage of every spec, in the specs' order
	audiences map[string]map[string]string
}

// audienceOf says who each backend of s serves: its groups' header values
// ("FREE", "BETA"), and "others" (requests with no group or an unknown
// one) for the default backend.
func audienceOf(s *weights.Spec) map[string]string {
	who := map[string][]string{}
	for _, g := range s.GroupValues() {
		who[s.Groups[g]] = append(who[s.Groups[g]], g)
	}
	if s.Default != "" {
		who[s.Default] = append(who[s.Default], "others")
	}
	out := make(map[string]string, len(who))
	for backend, groups := range who {
		out[backend] = strings.Join(groups, ", ")
	}
	return out
}

// inStageOrder returns h's tracks in the order of stages (the spec's),
// the ones it does not name after them.
func inStageOrder(tracks []fleet.TrackHealth, stages []string) []fleet.TrackHealth {
	out := slices.Clone(tracks)
	rank := func(name string) int {
		if i := slices.Index(stages, name); i >= 0 {
			return i
		}
		return len(stages)
	}
	slices.SortStableFunc(out, func(a, b fleet.TrackHealth) int { return rank(a.Name) - rank(b.Name) })
	return out
}

func (b *Board) state() boardState {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := boardState{Namespace: namespaceWords(b.namespace), Healths: b.healths, APIError: b.apiErr, Updated: b.updated, audiences: b.audiences}
	// The columns: each spec's stages in its order, merged (a stage
	// first seen in a later spec goes after the ones it follows there).
	seen := map[string]bool{}
	for _, h := range b.healths {
		order := b.stages[h.Namespace+"/"+h.Service]
		for i, t := range order {
			if seen[t] {
				continue
			}
			seen[t] = true
			at := len(s.Stages)
			if i > 0 {
				if j := slices.Index(s.Stages, order[i-1]); j >= 0 {
					at = j + 1
				}
			}
			s.Stages = slices.Insert(s.Stages, at, t)
		}
	}
	return s
}

func (b *Board) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		b.render(w, "overview.html", b.overview())
	})
	mux.HandleFunc("GET /fragment/overview", func(w http.ResponseWriter, r *http.Request) {
		b.render(w, "overview-table", b.overview())
	})
	mux.HandleFunc("GET /events", b.events)
	mux.HandleFunc("POST /act/{namespace}/{service}", b.act)
	mux.HandleFunc("GET /service/{namespace}/{service}", func(w http.ResponseWriter, r *http.Request) {
		page, ok := b.service(r.PathValue("namespace"), r.PathValue("service"))
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			b.render(w, "notfound.html", map[string]string{"Namespace": r.PathValue("namespace"), "Service": r.PathValue("service")})
			return
		}
		b.render(w, "service.html", page)
	})
	mux.HandleFunc("GET /fragment/service/{namespace}/{service}", func(w http.ResponseWriter, r *http.Request) {
		page, ok := b.service(r.PathValue("namespace"), r.PathValue("service"))
		if !ok {
			http.NotFound(w, r)
			return
		}
		b.render(w, "service-body", page)
	})
	static, _ := fs.Sub(files, "web")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	return securityHeaders(b.hostCheck(mux))
}

func (b *Board) hostCheck(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !b.hostAllowed(r.Host) {
			http.Error(w, fmt.Sprintf("Host %q is not one this board answers (an IP address, localhost, or trackctl board --allow-host NAME)", r.Host), http.StatusMisdirectedRequest)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// securityHeaders: the page runs only its own script and style, and is
// framed by nobody.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

func (b *Board) render(w http.ResponseWriter, name string, data any) {
	var buf bytes.Buffer
	if err := templates.ExecuteTemplate(&buf, name, data); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(buf.Bytes())
}

// overviewPage is the overview's data.
type overviewPage struct {
	boardState
	Rows []overviewRow
}

type overviewRow struct {
	H     *fleet.Health
	Cells []stageCell // one per boardState.Stages
	// Path is the service's stages in its spec's order, as a build walks
	// them, with where its release is.
	Path []pathStep
	// Problems are the health's, one line for what several HAProxy pods
	// share.
	Problems []string
	// Evidence is what the release's last look or decision compared.
	Evidence *evidenceView
}

type stageCell struct {
	Present bool
	Track   fleet.TrackHealth
	Shares  []string // "FREE 5.0%": who the backend serves (its groups, "others" for the default) and the track's share
	Bad     bool     // fewer ready endpoints than needed
	// Differs: the stage runs another version than the last stage
	// (production).
	Differs bool
	// Release is the release's phase when it is on this stage.
	Release string
}

// pathStep is a stage on a release's path: Mark is "passed", "here",
// "failed" or "" (not reached).
type pathStep struct {
	Stage, Mark, Words string
}

// releasePath draws the stages as the path a build walks, with the
// release's position: the stages it left passed, its own marked with its
// phase (failed when rolled back or stopped there).
func releasePath(stages []string, r *pipeline.Status) []pathStep {
	at := -1
	if r != nil {
		at = slices.Index(stages, r.Stage)
	}
	var out []pathStep
	for i, st := range stages {
		step := pathStep{Stage: st}
		switch {
		case at < 0:
		case i < at || i == at && r.Phase == pipeline.Done:
			step.Mark = "passed"
		case i == at && (r.Phase == pipeline.RolledBack || r.Phase == pipeline.Stopped):
			step.Mark, step.Words = "failed", stepWords(r.Phase)
		case i == at:
			step.Mark, step.Words = "here", stepWords(r.Phase)
		}
		out = append(out, step)
	}
	return out
}

// stepWords is a phase in the words of a step on the path.
func stepWords(p pipeline.Phase) string {
	if p == pipeline.Manual {
		return "waiting for promote"
	}
	return p.Words()
}

// foldPods writes problems that differ only in the HAProxy pod they name
// as one line: "on 3 HAProxy pods (a, b, c): ...".
func foldPods(problems []string, pods []fleet.PodState) []string {
	if len(pods) < 2 {
		return problems
	}
	type group struct {
		text string
		pods []string
	}
	var order []string
	groups := map[string]*group{}
	for _, p := range problems {
		key, pod := p, ""
		for _, ps := range pods {
			if strings.Contains(p, ps.Name) {
				key, pod = strings.ReplaceAll(p, ps.Name, "POD"), ps.Name
				break
			}
		}
		g := groups[key]
		if g == nil {
			g = &group{text: p}
			groups[key] = g
			order = append(order, key)
		}
		if pod != "" {
			g.pods = append(g.pods, pod)
		}
	}
	out := make([]string, 0, len(order))
	for _, key := range order {
		g := groups[key]
		if len(g.pods) < 2 {
			out = append(out, g.text)
			continue
		}
		text := strings.ReplaceAll(strings.ReplaceAll(key, "HAProxy pod POD", "each"), "POD", "each")
		out = append(out, fmt.Sprintf("on %d HAProxy pods (%s): %s", len(g.pods), strings.Join(g.pods, ", "), text))
	}
	return out
}

func (b *Board) overview() overviewPage {
	s := b.state()
	p := overviewPage{boardState: s}
	for _, h := range s.Healths {
		b.mu.Lock()
		order := b.stages[h.Namespace+"/"+h.Service]
		b.mu.Unlock()
		row := overviewRow{H: h, Path: releasePath(order, h.Release), Problems: foldPods(h.Problems, h.HAProxy.Pods), Evidence: evidenceOf(h.Release, order)}
		last := ""
		if len(order) > 0 {
			for _, t := range h.Tracks {
				if t.Name == order[len(order)-1] {
					last = t.Version
				}
			}
		}
		for _, stage := range s.Stages {
			cell := stageCell{}
			for _, t := range h.Tracks {
				if t.Name == stage {
					cell.Present, cell.Track = true, t
					cell.Bad = t.ReadyEndpoints < t.MinEndpoints
					cell.Differs = last != "" && t.Version != last
				}
			}
			if r := h.Release; r != nil && r.Stage == stage {
				switch r.Phase {
				case pipeline.RolledBack:
					cell.Release = "✗ " + r.Version + " rolled back here"
				case pipeline.Stopped:
					cell.Release = "✗ " + r.Version + " stopped here"
				default:
					cell.Release = "▶ " + r.Version + " " + stepWords(r.Phase)
				}
			}
			served := false
			for _, bk := range h.Backends {
				for _, sv := range bk.Servers {
					served = served || sv.Track == stage
					if sv.Track == stage && sv.Weight > 0 {
						who := s.audiences[h.Namespace+"/"+h.Service][bk.Name]
						if who == "" {
							who = "backend " + bk.Name + " (no group)"
						}
						cell.Shares = append(cell.Shares, fmt.Sprintf("%s %.1f%%", who, sv.Share))
					}
				}
			}
			if served && len(cell.Shares) == 0 {
				cell.Shares = []string{"no traffic (weight 0)"}
			}
			row.Cells = append(row.Cells, cell)
		}
		p.Rows = append(p.Rows, row)
	}
	return p
}

// servicePage is a service's page.
type servicePage struct {
	H        *fleet.Health
	APIError string
	History  []release.HistoryEntry // newest first
	Spec     string
	// Plots are each track's requests, errors and latency of the last
	// minutes; Plotting is false when the board does not plot.
	Plots     []Plot
	PlotError string
	Plotting  bool
	Every     time.Duration
	// Actions are the buttons the release can be told now, with the token
	// they carry; none on a board that only reads.
	Actions []Action
	Token   string
	// Evidence is what the release's last look or decision compared.
	Evidence *evidenceView
	// Path, Problems and Updated: as on the overview.
	Path     []pathStep
	Problems []string
	Updated  time.Time
}

func (b *Board) service(ns, name string) (servicePage, bool) {
	s := b.state()
	for _, h := range s.Healths {
		if h.Namespace == ns && h.Service == name {
			b.mu.Lock()
			order := b.stages[ns+"/"+name]
			b.mu.Unlock()
			hc := *h
			hc.Tracks = inStageOrder(h.Tracks, order)
			h = &hc
			p := servicePage{H: h, APIError: s.APIError, Path: releasePath(order, h.Release), Problems: foldPods(h.Problems, h.HAProxy.Pods), Updated: s.Updated,
				Evidence: evidenceOf(h.Release, order)}
			if b.run != nil {
				p.Actions, p.Token = actionsFor(h.Release), b.token
			}
			p.Plots, p.PlotError, p.Plotting = b.plotsOf(ns+"/"+name, h.Tracks, h.Release)
			if p.Plotting {
				p.Every = b.plots.every
			}
			b.mu.Lock()
			cm := b.specs[ns+"/"+name]
			b.mu.Unlock()
			if cm != nil {
				hist := release.ReadHistory(cm)
				for i := len(hist) - 1; i >= 0; i-- {
					p.History = append(p.History, hist[i])
				}
				p.Spec = cm.Data[weights.DataKey]
			}
			return p, true
		}
	}
	return servicePage{}, false
}

// events streams "change" at every evaluation and "samples" (with the
// service's key) at every read of a service's plots, as server-sent
// events; a page then fetches its fragment. A comment every 15 s keeps proxies from
// closing the stream.
func (b *Board) events(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ch := make(chan event, 16)
	b.mu.Lock()
	b.subs[ch] = true
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.subs, ch)
		b.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprint(w, "retry: 1000\n\n")
	flusher.Flush()
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-ch:
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.name, ev.data)
		case <-tick.C:
			fmt.Fprint(w, ": alive\n\n")
		}
		flusher.Flush()
	}
}

func namespaceWords(ns string) string {
	if ns == "" {
		return "any namespace"
	}
	return "namespace " + ns
}
