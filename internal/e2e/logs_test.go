package e2e

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// logKeeper copies the pods' log files (the kubelet's CRI logs) as they
// grow into a directory of its own: the kubelet deletes a pod's logs with
// the pod, and the walk replaces every HAProxy pod (the tier's roll) and
// some track pods; a failure in an early step needs the logs of pods that
// are gone by the end.
type logKeeper struct {
	src, dst string
	stop     chan struct{}
	done     chan struct{}

	mu    sync.Mutex
	sizes map[string]int64
}

func keepLogs(src, dst string) *logKeeper {
	k := &logKeeper{src: src, dst: dst, stop: make(chan struct{}), done: make(chan struct{}), sizes: map[string]int64{}}
	go func() {
		defer close(k.done)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			k.copy()
			select {
			case <-k.stop:
				k.copy()
				return
			case <-tick.C:
			}
		}
	}()
	return k
}

// Stop copies once more and stops.
func (k *logKeeper) Stop() {
	close(k.stop)
	<-k.done
}

// copy appends what each log file gained since the last copy. A file that
// shrank (rotated) is copied whole to a new name.
func (k *logKeeper) copy() {
	k.mu.Lock()
	defer k.mu.Unlock()
	filepath.WalkDir(k.src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".log") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(k.src, path)
		was := k.sizes[rel]
		if info.Size() == was {
			return nil
		}
		if info.Size() < was {
			was = 0
		}
		in, err := os.Open(path)
		if err != nil {
			return nil
		}
		defer in.Close()
		if _, err := in.Seek(was, io.SeekStart); err != nil {
			return nil
		}
		out := filepath.Join(k.dst, rel)
		os.MkdirAll(filepath.Dir(out), 0o700)
		f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil
		}
		defer f.Close()
		n, _ := io.Copy(f, in)
		k.sizes[rel] = was + n
		return nil
	})
}

// routerEvents are the lines of the kept HAProxy pods' logs between from
// and to that say what HAProxy and the sidecar did to the servers: state
// changes, reloads, starts, warnings. Each is prefixed by its pod.
func routerEvents(dir string, from, to time.Time) []string {
	var out []string
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		// <namespace>_<pod>_<uid>/<container>/<n>.log
		parts := strings.Split(rel, string(filepath.Separator))
		if len(parts) != 3 || !strings.Contains(parts[0], "-haproxy-") {
			return nil
		}
		pod := strings.Split(parts[0], "_")
		name := parts[0]
		if len(pod) == 3 {
			name = pod[1]
		}
		f, err := os.Open(path)
		if err != nil {
			return nil
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			// CRI format: <RFC3339Nano> <stream> <P|F> <message>
			fields := strings.SplitN(sc.Text(), " ", 4)
			if len(fields) < 4 {
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, fields[0])
			if err != nil || at.Before(from) || at.After(to) {
				continue
			}
			msg := fields[3]
			if !interesting(msg) {
				continue
			}
			if len(msg) > 300 {
				msg = msg[:300] + "…"
			}
			out = append(out, fmt.Sprintf("%s %s/%s: %s", at.Local().Format("15:04:05.000"), name, parts[1], msg))
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func interesting(msg string) bool {
	for _, s := range []string{" is DOWN", " is UP", "no server available", "MAINT", "DRAIN", "msg=applied", "haproxy started", "New worker", "level=WARN", "level=ERROR", "ALERT", "WARNING", "stopping", "Proxy ", "resolution"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
