package router

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// lockConfig takes an exclusive lock on PATH.lock, next to the config (and
// next to the master socket: see Run), so one sidecar at a time manages a
// config and its HAProxy. The lock holds the owner's PID for the error a
// second sidecar prints; the kernel drops it when the owner exits, however
// it exits.
func lockConfig(configPath string) (release func(), err error) {
	path := configPath + ".lock"
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		owner, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another trackrouter (pid %s) manages %s: %s is locked; stop it, or give this one its own --haproxy-config and --master-socket",
				orText(strings.TrimSpace(string(owner)), "unknown"), configPath, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}
