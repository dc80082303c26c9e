package testnode

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Clean undoes what a node in dir left on the host, also after a crash: it
// kills every process in the node's cgroups (containers and shims), unmounts
// what is mounted under dir and the pods' network namespaces, removes
// kube-proxy's and kubelet's iptables chains, the bridge, the cgroups and
// containerd's runtime state, and puts back the sysctls it changed. bin is the node's bin directory (for
// kube-proxy --cleanup); it may be "". Errors are ignored: it does what it
// can.
func Clean(dir, bin string) {
	killShims(dir)
	for i := 0; i < 50 && killCgroups() > 0; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	unmountUnder(dir)
	if ents, err := filepath.Glob("/run/netns/cni-*"); err == nil {
		for _, e := range ents {
			syscall.Unmount(e, syscall.MNT_DETACH)
			os.Remove(e)
		}
	}
	if bin != "" {
		exec.Command(filepath.Join(bin, "kube-proxy"), "--cleanup").Run()
	}
	removeKubeChains()
	exec.Command("ip", "link", "delete", Bridge).Run()
	removeCgroups()
	if !containerdRunning() {
		for _, p := range []string{"/run/containerd/runc/k8s.io", "/run/containerd/fifo"} {
			os.RemoveAll(p)
		}
		if ents, err := filepath.Glob("/run/containerd/s/*"); err == nil {
			for _, e := range ents {
				os.Remove(e)
			}
		}
	}
	if ents, err := filepath.Glob("/var/lib/cni/results/trackrouter-node-*"); err == nil {
		for _, e := range ents {
			os.Remove(e)
		}
	}
	// The sysctls as they were before the node set them (recorded in dir).
	if b, err := os.ReadFile(filepath.Join(dir, "sysctls")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok && !strings.Contains(k, "..") {
				os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644)
			}
		}
	}
	if ents, err := filepath.Glob("/var/log/containers/*"); err == nil {
		for _, e := range ents {
			if t, err := os.Readlink(e); err == nil && strings.HasPrefix(t, dir) {
				os.Remove(e)
			}
		}
	}
}

// cgroupHierarchies are the cgroup hierarchies the kubelet uses: every v1
// controller's (not the symlinks such as cpu -> cpu,cpuacct), or the v2 one.
func cgroupHierarchies() []string {
	const base = "/sys/fs/cgroup"
	if _, err := os.Stat(filepath.Join(base, "cgroup.controllers")); err == nil {
		return []string{base}
	}
	ents, err := os.ReadDir(base)
	if err != nil {
		return nil
	}
	var hs []string
	for _, e := range ents {
		if e.IsDir() && e.Type()&os.ModeSymlink == 0 {
			hs = append(hs, filepath.Join(base, e.Name()))
		}
	}
	return hs
}

// killCgroups SIGKILLs every process in the node's cgroups and returns how
// many it found.
func killCgroups() int {
	n := 0
	for _, h := range cgroupHierarchies() {
		filepath.WalkDir(filepath.Join(h, cgroupRoot), func(path string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			b, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
			if err != nil {
				return nil
			}
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
					syscall.Kill(pid, syscall.SIGKILL)
					n++
				}
			}
			return nil
		})
	}
	return n
}

// removeCgroups removes the node's cgroups, deepest first.
func removeCgroups() {
	for _, h := range cgroupHierarchies() {
		var dirs []string
		filepath.WalkDir(filepath.Join(h, cgroupRoot), func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			os.Remove(dirs[i])
		}
	}
}

// killShims kills the containerd shims of the node's containerd (their
// command lines name its socket, under dir): they outlive containerd.
func killShims(dir string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), "containerd-shim") || !strings.Contains(string(b), dir) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func containerdRunning() bool {
	procs, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == "containerd" {
			return true
		}
	}
	return false
}

// unmountUnder unmounts every mount point under dir, deepest first (the
// kubelet bind-mounts its root dir on itself, and each pod's volumes).
func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			points = append(points, fields[4])
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, p := range points {
		syscall.Unmount(p, syscall.MNT_DETACH)
	}
}

// removeKubeChains removes the KUBE-* chains kube-proxy --cleanup leaves
// (the kubelet's canaries), in every table of iptables and ip6tables.
func removeKubeChains() {
	for _, bin := range []string{"iptables", "ip6tables"} {
		for _, table := range []string{"filter", "nat", "mangle"} {
			out, err := exec.Command(bin+"-save", "-t", table).Output()
			if err != nil {
				continue
			}
			var chains []string
			for _, line := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(line, ":KUBE-") {
					chains = append(chains, strings.Fields(line[1:])[0])
				}
				// A rule in a built-in chain that jumps to a KUBE- chain.
				if strings.HasPrefix(line, "-A ") && strings.Contains(line, " -j KUBE-") && !strings.HasPrefix(line, "-A KUBE-") {
					args := strings.Fields(strings.Replace(line, "-A ", "-D ", 1))
					exec.Command(bin, append([]string{"-t", table}, unquote(args)...)...).Run()
				}
			}
			for _, c := range chains {
				exec.Command(bin, "-t", table, "-F", c).Run()
			}
			for _, c := range chains {
				exec.Command(bin, "-t", table, "-X", c).Run()
			}
		}
	}
}

// unquote strips iptables-save's quotes around comments.
func unquote(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, `"`) {
			j := i
			for !strings.HasSuffix(args[j], `"`) || (j == i && len(a) == 1) {
				j++
				if j >= len(args) {
					break
				}
			}
			if j < len(args) {
				a = strings.Trim(strings.Join(args[i:j+1], " "), `"`)
				i = j
			}
		}
		out = append(out, a)
	}
	return out
}

// httpOK says whether a GET of url answers 200.
func httpOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
