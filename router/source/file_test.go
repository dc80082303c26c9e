package source

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fileRun runs a FileSource on path and collects what it submits.
type fileRun struct {
	mu      sync.Mutex
	updates []Update
	cancel  context.CancelFunc
	done    chan struct{}
}

func runFileSource(t *testing.T, path string, resync time.Duration) *fileRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	fr := &fileRun{cancel: cancel, done: make(chan struct{})}
	src := &FileSource{Path: path, Resync: resync, Log: slog.New(slog.DiscardHandler)}
	go func() {
		src.Run(ctx, func(u Update) { fr.mu.Lock(); fr.updates = append(fr.updates, u); fr.mu.Unlock() })
		close(fr.done)
	}()
	t.Cleanup(fr.stop)
	return fr
}

func (fr *fileRun) stop() {
	fr.cancel()
	<-fr.done
}

func (fr *fileRun) list() []Update {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	return append([]Update(nil), fr.updates...)
}

func (fr *fileRun) waitFor(t *testing.T, what string, cond func([]Update) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond(fr.list()) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; updates: %v", what, fr.list())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func last(us []Update) Update {
	if len(us) == 0 {
		return Update{}
	}
	return us[len(us)-1]
}

// TestFileSourceFIFO is D6: a FIFO at the spec path is refused without
// blocking; a regular file put there later is read, and the source stops
// at once when asked.
func TestFileSourceFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "service.yaml")
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	fr := runFileSource(t, path, 50*time.Millisecond)
	fr.waitFor(t, "the FIFO refused", func(us []Update) bool {
		return last(us).Err != nil && strings.Contains(last(us).Err.Error(), "is not a regular file")
	})
	os.WriteFile(path+".new", []byte("service: a\n"), 0o644)
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	fr.waitFor(t, "the regular file read", func(us []Update) bool { return string(last(us).Data) == "service: a\n" })
	start := time.Now()
	fr.stop()
	if d := time.Since(start); d > time.Second {
		t.Errorf("the source took %s to stop", d)
	}
}

// TestFileSourceTooLarge: a 512 MiB file is refused after reading at most
// 1 MiB + 1 byte.
func TestFileSourceTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "service.yaml")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(512 << 20) // sparse: no disk used
	f.Close()
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	_, err = readSpecFile(path)
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	if err == nil || !strings.Contains(err.Error(), "larger than 1048576 bytes") {
		t.Errorf("want a size error, got %v", err)
	}
	if grew := after.Maxrss - before.Maxrss; grew > 64<<10 { // KiB
		t.Errorf("reading the file grew the peak RSS by %d KiB", grew)
	}
}

// TestFileSourceInPlaceWrite: a writer that truncates, then writes, is not
// read as an empty spec in between (R5's false rejections).
func TestFileSourceInPlaceWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "service.yaml")
	os.WriteFile(path, []byte("service: a\n"), 0o644)
	fr := runFileSource(t, path, time.Hour)
	fr.waitFor(t, "first read", func(us []Update) bool { return len(us) == 1 })
	for i, content := range []string{"service: b\n", "service: c\n", "service: d\n"} {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Millisecond) // the empty moment, seen by fsnotify
		f.WriteString(content)
		f.Close()
		fr.waitFor(t, "write "+string(rune('1'+i)), func(us []Update) bool { return string(last(us).Data) == content })
	}
	for _, u := range fr.list() {
		if len(u.Data) == 0 || u.Err != nil {
			t.Errorf("an in-place write was submitted as %q (err %v)", u.Data, u.Err)
		}
	}
}

// TestFileSourceMissingOnce: a missing file is reported once, not at every
// resync, and a file that appears is read.
func TestFileSourceMissingOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "service.yaml")
	fr := runFileSource(t, path, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	if us := fr.list(); len(us) != 1 || us[0].Err == nil {
		t.Fatalf("want one error update over 20 resyncs, got %v", us)
	}
	os.WriteFile(path, []byte("service: a\n"), 0o644)
	fr.waitFor(t, "the new file read", func(us []Update) bool { return string(last(us).Data) == "service: a\n" })
}

// TestFileSourceReplaceIsNoError: a spec replaced by rm and cp is missing
// for a moment; that moment is not sent as an error (it would log and count
// a read error for every such edit), the new content is.
func TestFileSourceReplaceIsNoError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "service.yaml")
	if err := os.WriteFile(path, []byte("service: a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fr := runFileSource(t, path, time.Hour)
	fr.waitFor(t, "the first read", func(us []Update) bool { return len(us) == 1 })
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // within the 200ms settle time
	if err := os.WriteFile(path, []byte("service: b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fr.waitFor(t, "the new content", func(us []Update) bool { return string(last(us).Data) == "service: b\n" })
	for _, u := range fr.list() {
		if u.Err != nil {
			t.Errorf("rm and cp sent an error: %v", u.Err)
		}
	}
	// A file that stays away is an error, once the settle time is over.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	fr.waitFor(t, "the missing file", func(us []Update) bool { return last(us).Err != nil })
}

// TestFileSourceComesBackEmptyFirst: a file removed, then written in place
// (created empty, then filled), is not sent empty: the hold for an empty
// read applies after a read error too.
func TestFileSourceComesBackEmptyFirst(t *testing.T) {
	path := filepath.Join(t.TempDir(), "service.yaml")
	if err := os.WriteFile(path, []byte("service: a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fr := runFileSource(t, path, time.Hour)
	fr.waitFor(t, "the first read", func(us []Update) bool { return len(us) == 1 })
	os.Remove(path)
	fr.waitFor(t, "the missing file", func(us []Update) bool { return last(us).Err != nil })
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond) // the empty moment, seen by fsnotify
	f.WriteString("service: b\n")
	f.Close()
	fr.waitFor(t, "the new content", func(us []Update) bool { return string(last(us).Data) == "service: b\n" })
	for _, u := range fr.list() {
		if u.Err == nil && len(u.Data) == 0 {
			t.Errorf("an empty spec was sent: %+v", fr.list())
		}
	}
}

// TestFileSourceDirectoryGoneAndBack: the watched directory removed and
// made again (or missing at start) is watched again: an edit is seen in
// about a second, not at the next resync.
func TestFileSourceDirectoryGoneAndBack(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spec")
	path := filepath.Join(dir, "service.yaml")
	fr := runFileSource(t, path, time.Hour) // the directory does not exist yet
	fr.waitFor(t, "the missing file", func(us []Update) bool { return last(us).Err != nil })
	os.MkdirAll(dir, 0o755)
	os.WriteFile(path, []byte("service: a\n"), 0o644)
	fr.waitFor(t, "the file in the new directory", func(us []Update) bool { return string(last(us).Data) == "service: a\n" })
	os.RemoveAll(dir)
	fr.waitFor(t, "the file gone with its directory", func(us []Update) bool { return last(us).Err != nil })
	os.MkdirAll(dir, 0o755)
	os.WriteFile(path, []byte("service: b\n"), 0o644)
	fr.waitFor(t, "the file in the directory made again", func(us []Update) bool { return string(last(us).Data) == "service: b\n" })
	// And watched, not polled: the next edit is seen at once.
	os.WriteFile(path+".new", []byte("service: c\n"), 0o644)
	os.Rename(path+".new", path)
	fr.waitFor(t, "an edit after that", func(us []Update) bool { return string(last(us).Data) == "service: c\n" })
}
