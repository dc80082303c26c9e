// Package fsutil reads and writes the files trackrouter and trackctl touch
// the safe way: reads never block on a FIFO or a device and are bounded,
// writes replace a file atomically.
package fsutil

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// ReadRegular reads at most limit+1 bytes of the regular file at path
// (following symbolic links). Anything else (a FIFO, a device, a
// directory) is refused without a blocking open; the caller tells a file
// over limit by its length.
func ReadRegular(path string, limit int) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if info.IsDir() {
		return nil, fmt.Errorf("%s is a directory", path)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s): refused", path, info.Mode().Type())
	}
	return io.ReadAll(io.LimitReader(f, int64(limit)+1))
}

// WriteAtomic replaces path with data: a temporary file in the same
// directory, synced, given perm (and uid/gid when both are >= 0, where
// allowed), renamed over path. A reader sees the old file or the new one,
// never half of it.
func WriteAtomic(path string, data []byte, perm os.FileMode, uid, gid int) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil && uid >= 0 && gid >= 0 {
		f.Chown(uid, gid) // kept where allowed (root)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
