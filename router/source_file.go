package router

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/trackrouter/trackrouter/weights"
)

// FileSource watches a file holding service.yaml: a ConfigMap mounted as a
// volume (the kubelet swaps a ..data symlink in the directory), or a plain
// file edited in place or replaced by rename. It watches the directory, not
// the file, since both of those replace the file's inode.
type FileSource struct {
	Path   string
	Resync time.Duration // re-read this often even without events; default 30s
	Log    *slog.Logger
}

// Run sends the file's content to submit at start and after every change,
// until ctx ends.
func (f *FileSource) Run(ctx context.Context, submit func(Update)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	dir := filepath.Dir(f.Path)
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	resync := f.Resync
	if resync == 0 {
		resync = 30 * time.Second
	}
	tick := time.NewTicker(resync)
	defer tick.Stop()

	var last []byte
	var lastErr string
	read := func(force bool) {
		data, err := os.ReadFile(f.Path)
		u := Update{Data: data, Source: weights.Source{File: f.Path}}
		if err != nil {
			u = Update{Source: u.Source, Err: fmt.Errorf("read spec: %w", err)}
			if !force && err.Error() == lastErr {
				return
			}
			lastErr, last = err.Error(), nil
			submit(u)
			return
		}
		if !force && lastErr == "" && bytes.Equal(data, last) {
			return
		}
		last, lastErr = data, ""
		submit(u)
	}
	read(true)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			read(true)
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			f.Log.Debug("file event", "event", ev.String())
			read(false)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			f.Log.Warn("file watch error", "err", err)
		}
	}
}
