// Command echo is the app of the examples and of the end-to-end tests: every
// answer is its -text (the example's says its track and version). It takes
// hashicorp/http-echo's flags (-listen, -text, in Go's single-dash form), so
// the example's PodTemplate runs either image unchanged.
//
// Two things a real app does that the tests need: on SIGTERM it goes on
// serving for -shutdown-delay, while Kubernetes removes the pod from its
// Service's endpoints, then closes idle connections and waits for the ones
// in flight; -fail-percent (or $ECHO_FAIL_PERCENT, which a "bad build"
// image sets) answers that share of requests with 500, exactly: with 2,
// every 50th; and -delay (or $ECHO_DELAY, which a "slow build" image sets)
// waits that long before each answer. Kubelet's probes (User-Agent
// kube-probe/...) never fail and never wait.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", ":5678", "address to listen on")
	text := flag.String("text", "", "the answer to every request")
	delay := flag.Duration("shutdown-delay", 5*time.Second, "how long to go on serving after SIGTERM, while the pod leaves its Service's endpoints")
	fail := flag.Float64("fail-percent", envPercent("ECHO_FAIL_PERCENT"), "share of requests answered with 500, in percent (default $ECHO_FAIL_PERCENT or 0)")
	slow := flag.Duration("delay", 0, "wait this long before each answer (default $ECHO_DELAY or 0)")
	flag.Parse()
	if *slow == 0 && os.Getenv("ECHO_DELAY") != "" {
		d, err := time.ParseDuration(os.Getenv("ECHO_DELAY"))
		if err != nil || d < 0 {
			log.Fatalf("$ECHO_DELAY %q: want a duration such as 30ms", os.Getenv("ECHO_DELAY"))
		}
		*slow = d
	}
	if *slow < 0 {
		log.Fatalf("-delay %v: want 0 or more", *slow)
	}
	if *text == "" {
		log.Fatal("-text is required: the answer to every request")
	}
	if *fail < 0 || *fail > 100 {
		log.Fatalf("-fail-percent %v: want 0 to 100", *fail)
	}
	handler := answer(*text, *fail, *slow)
	srv := &http.Server{Addr: *listen, Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Printf("echo: listening on %s, answering %q, failing %v%%, %s late", *listen, *text, *fail, *slow)
	select {
	case err := <-errc:
		log.Fatal(err)
	case <-ctx.Done():
	}
	log.Printf("echo: stopping: serving %s more, then draining", *delay)
	time.Sleep(*delay)
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// answer answers every request with text, fail percent of them with 500,
// each after delay; kubelet's probes never fail and never wait.
func answer(text string, fail float64, delay time.Duration) http.Handler {
	var n atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		probe := strings.HasPrefix(r.UserAgent(), "kube-probe/")
		if delay > 0 && !probe {
			time.Sleep(delay)
		}
		if fail > 0 && !probe && failNext(n.Add(1), fail) {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintln(w, "error from", text)
			return
		}
		fmt.Fprintln(w, text)
	})
}

// failNext says whether the nth request fails when pct percent do: the
// requests where n*pct/100 reaches a new whole number.
func failNext(n int64, pct float64) bool {
	return int64(float64(n)*pct/100) != int64(float64(n-1)*pct/100)
}

func envPercent(name string) float64 {
	v, err := strconv.ParseFloat(os.Getenv(name), 64)
	if err != nil {
		return 0
	}
	return v
}
