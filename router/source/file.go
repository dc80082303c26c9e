package source

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/trackrouter/trackrouter/internal/fsutil"
	"github.com/trackrouter/trackrouter/weights"
)

// FileSource watches a file holding service.yaml: a ConfigMap mounted as a
// volume (the kubelet swaps a ..data symlink in the directory), or a plain
// file edited in place or replaced by rename. It watches the directory, not
// the file, since both of those replace the file's inode.
type FileSource struct {
	Path   string
	Resync time.Duration // re-read this often even without events; default 30s
	// Settle is how long an empty or failed read of a file that was
	// readable waits for the content that an in-place writer (truncate,
	// then write) or a replace by rm and cp is about to put; default 200ms.
	Settle time.Duration
	Log    *slog.Logger
}

// Run sends the file's content to submit at start and after every change,
// until ctx ends. An error is sent once, not again at every resync.
func (f *FileSource) Run(ctx context.Context, submit func(Update)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	dir := filepath.Dir(f.Path)
	// The directory may be missing (not mounted yet) or go away (removed
	// and made again): the watch is set again every second until it
	// holds, and the file is read then.
	watching, warned := false, false
	watch := func() {
		if err := w.Add(dir); err != nil {
			if !warned {
				f.Log.Warn("cannot watch the spec's directory; trying again every second", "dir", dir, "err", err)
				warned = true
			}
			return
		}
		if warned {
			f.Log.Info("watching the spec's directory again", "dir", dir)
		}
		watching, warned = true, false
	}
	watch()
	rewatch := time.NewTicker(time.Second)
	defer rewatch.Stop()
	resync := orDefault(f.Resync, 30*time.Second)
	tick := time.NewTicker(resync)
	defer tick.Stop()
	settle := time.NewTimer(0)
	<-settle.C
	settling := false

	var last []byte
	lastErr := ""
	// readable: the file had content once; an empty or failed read of it
	// is then held back for Settle (a writer in the middle of its work).
	readable := false
	src := weights.Source{File: f.Path}
	read := func(force, settled bool) {
		data, err := readSpecFile(f.Path)
		// A file that had content, now missing (a replace by rm and cp)
		// or empty (an in-place write between truncate and write), is
		// probably back in a moment: held back for Settle.
		if !settled && readable && (err != nil && lastErr == "" || err == nil && len(data) == 0) {
			settling = true
			settle.Reset(orDefault(f.Settle, 200*time.Millisecond))
			return
		}
		if err != nil {
			if err.Error() == lastErr {
				return
			}
			lastErr, last = err.Error(), nil
			submit(Update{Source: src, Err: err})
			return
		}
		if !force && lastErr == "" && bytes.Equal(data, last) {
			return
		}
		last, lastErr = data, ""
		readable = readable || len(data) > 0
		submit(Update{Data: data, Source: src})
	}
	read(true, false)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			read(true, false)
		case <-rewatch.C:
			if !watching {
				if watch(); watching {
					read(false, false)
				}
			}
		case <-settle.C:
			settling = false
			read(false, true)
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			f.Log.Debug("file event", "event", ev.String())
			if filepath.Clean(ev.Name) == filepath.Clean(dir) && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				watching = false // the watch went with the directory
			}
			if !settling {
				read(false, false)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			f.Log.Warn("file watch error", "err", err)
		}
	}
}

// readSpecFile reads a spec file without ever blocking on it (a FIFO or a
// device at the path is refused, not opened for a blocking read) and
// without reading more than weights.MaxInputBytes+1 bytes.
func readSpecFile(path string) ([]byte, error) {
	data, err := fsutil.ReadRegular(path, weights.MaxInputBytes)
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	if len(data) > weights.MaxInputBytes {
		return nil, fmt.Errorf("read spec: %s is larger than %d bytes: refused", path, weights.MaxInputBytes)
	}
	return data, nil
}
