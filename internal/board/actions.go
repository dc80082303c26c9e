package board

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/trackrouter/trackrouter/internal/pipeline"
)

// Run runs one trackctl command line (args without the program's name) on
// the credentials of whoever started the board, and returns what it
// printed; err when it failed. trackctl board passes its own commands, so
// that a button does what the same command does in a terminal: the same
// checks, the same history record under the user's name.
type Run func(ctx context.Context, args []string) (output string, err error)

// Offer makes the service pages offer the release's actions (approve,
// pause, resume, abort, promote, roll back), run by run. Every action is a
// POST carrying a token made for this run of the board and written only
// into its own pages: a page of another site can make the browser send a
// request to 127.0.0.1, but cannot read the token (the Host check keeps
// it from reading the board by DNS rebinding), so its request is refused.
func (b *Board) Offer(run Run) {
	t := make([]byte, 24)
	rand.Read(t)
	b.run, b.token = run, hex.EncodeToString(t)
}

// Action is a button on a service page.
type Action struct {
	Name, Label, Title string
	// Arg is the command's argument after the service (a version, a
	// track), checked again against the release when the button is used.
	Arg string
}

// actionsFor lists what a release in this state can be told.
func actionsFor(r *pipeline.Status) []Action {
	if r == nil {
		return nil
	}
	switch r.Phase {
	case pipeline.Gates, pipeline.Baking, pipeline.Manual:
	default:
		return nil
	}
	var out []Action
	if r.Phase == pipeline.Gates {
		out = append(out, Action{Name: "approve", Label: "Approve " + r.Version, Title: "trackctl approve: the approval gate of " + r.Stage + " passes for " + r.Version})
	}
	out = append(out, Action{Name: "promote", Arg: r.Version, Label: "Promote " + r.Version, Title: "trackctl promote: " + r.Version + " moves to the stage after " + r.Stage + " now"})
	if r.Paused == "" {
		out = append(out, Action{Name: "pause", Label: "Pause", Title: "trackctl pause: no decision is taken until resumed"})
	} else {
		out = append(out, Action{Name: "resume", Label: "Resume", Title: "trackctl resume: decisions go on"})
	}
	out = append(out,
		Action{Name: "abort", Label: "Abort", Title: "trackctl abort: " + r.Version + " is rolled back as a breach would be"},
		Action{Name: "rollback", Arg: r.Stage, Label: "Roll back " + r.Stage, Title: "trackctl rollback: " + r.Stage + " back to the version it ran before"})
	return out
}

// act runs a button's command: POST /act/{namespace}/{service} with the
// run's token, the action and its argument.
func (b *Board) act(w http.ResponseWriter, r *http.Request) {
	if b.run == nil {
		http.Error(w, "this board only reads (trackctl board --read-only, or the controller's board): use trackctl", http.StatusNotFound)
		return
	}
	// A browser says where a request comes from; another site's is refused
	// even before the token is looked at.
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		http.Error(w, "refused: the request comes from another site ("+s+")", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "refused: "+err.Error(), http.StatusBadRequest)
		return
	}
	if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("token")), []byte(b.token)) != 1 {
		http.Error(w, "refused: no token of this board's run (reload the page: a board started again makes a new one)", http.StatusForbidden)
		return
	}
	ns, service := r.PathValue("namespace"), r.PathValue("service")
	page, ok := b.service(ns, service)
	if !ok {
		http.Error(w, fmt.Sprintf("no service %s in %s", service, ns), http.StatusNotFound)
		return
	}
	name, arg := r.PostForm.Get("action"), r.PostForm.Get("arg")
	var found *Action
	for _, a := range actionsFor(page.H.Release) {
		if a.Name == name && a.Arg == arg {
			found = &a
			break
		}
	}
	if found == nil {
		http.Error(w, fmt.Sprintf("refused: %q %s is not something the release of %s can be told now (it moved on since the page was drawn?): reload the page", name, arg, service), http.StatusConflict)
		return
	}
	args := []string{found.Name, service}
	if found.Arg != "" {
		args = append(args, found.Arg)
	}
	args = append(args, "-n", ns, "--reason", "from trackctl board")
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	out, err := b.run(ctx, args)
	code := http.StatusOK
	if err != nil {
		code = http.StatusUnprocessableEntity
		if out == "" {
			out = err.Error()
		}
	}
	w.WriteHeader(code)
	b.render(w, "action.html", actionPage{Namespace: ns, Service: service, Command: "trackctl " + joinArgs(args), Output: out, Failed: err != nil})
}

type actionPage struct {
	Namespace, Service, Command, Output string
	Failed                              bool
}

func joinArgs(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsRune(a, ' ') {
			a = "'" + a + "'"
		}
		quoted[i] = a
	}
	return strings.Join(quoted, " ")
}
