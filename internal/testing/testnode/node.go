// Package testnode runs a real Kubernetes node beside a testcluster control
// plane: Debian's containerd and runc, the CNI bridge plugins, and kubelet,
// kube-proxy and CoreDNS built from Go modules by hack/kube/build.sh. Its pods
// are real containers on a bridge of their own; Services route through
// kube-proxy's iptables rules; CoreDNS answers for cluster.local on the
// node's address, which is every pod's nameserver; the host reaches pod and
// Service IPs.
//
// One node runs on a machine at a time (it owns the bridge, the iptables
// chains and containerd's fixed paths under /run/containerd). Everything it
// changes on the host is undone by Stop, or by Clean after a crash.
package testnode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trackrouter/trackrouter/internal/testing/ports"
	"github.com/trackrouter/trackrouter/internal/testing/procs"
	"github.com/trackrouter/trackrouter/internal/testing/testcluster"
)

// The node's network: a bridge with the node's address, a /24 of pod IPs.
const (
	Address = "10.244.0.1" // the node's InternalIP, the pods' gateway and nameserver
	PodCIDR = "10.244.0.0/24"
	// ServiceCIDR is the test control plane's --service-cluster-ip-range.
	ServiceCIDR = "10.96.0.0/16"
	Bridge      = "trnode0"
	// SandboxImage is containerd's pause image, built by hack/image/build.sh.
	SandboxImage = "trackrouter.local/pause:1"
	// cgroupRoot is where the node's pods' cgroups live in every hierarchy.
	cgroupRoot = "/trackrouter-node"
)

// Options say how to start a node.
type Options struct {
	Dir    string // state and logs; must exist
	BinDir string // testcluster.NodeBinaries
	Name   string // default "node-1"
}

// Node is a running node.
type Node struct {
	Name string
	Dir  string

	bin     string
	cluster *testcluster.Cluster
	sock    string // containerd's socket
	procs   *procs.Group
	mu      sync.Mutex
	sysctls map[string]string // values before the node changed them
	ports   map[string]int
}

// New checks the machine (Preflight) and makes the node's network: the
// bridge with Address, the CNI configuration and the sysctls. Start the
// control plane next with testcluster.Options.BindAddress Address (its pods
// reach the API server there), then Start the node. Stop undoes New too.
// When another node runs on the machine (Busy), New changes nothing: the
// bridge is the node's claim, made before anything else and undone only by
// the node that made it.
func New(opt Options) (_ *Node, err error) {
	if opt.Name == "" {
		opt.Name = "node-1"
	}
	if err := Preflight(); err != nil {
		return nil, err
	}
	if err := Busy(); err != nil {
		return nil, err
	}
	n := &Node{Name: opt.Name, Dir: opt.Dir, bin: opt.BinDir, sysctls: make(map[string]string), ports: make(map[string]int),
		procs: &procs.Group{LogDir: filepath.Join(opt.Dir, "logs"), Grace: 5 * time.Second}}
	n.sock = filepath.Join(n.Dir, "containerd", "containerd.sock")
	for _, d := range []string{"logs", "containerd", "cni", "manifests", "pod-logs", "kubelet", "pki"} {
		if err := os.MkdirAll(filepath.Join(n.Dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	if out, err := exec.Command("ip", "link", "add", Bridge, "type", "bridge").CombinedOutput(); err != nil {
		if Busy() != nil {
			return nil, Busy()
		}
		return nil, fmt.Errorf("ip link add %s type bridge: %v: %s", Bridge, err, bytes.TrimSpace(out))
	}
	defer func() {
		if err != nil {
			n.Stop()
		}
	}()
	return n, n.network()
}

// Busy says whether a node runs on this machine (or one was left by a
// crash): its bridge exists.
func Busy() error {
	if _, err := net.InterfaceByName(Bridge); err == nil {
		return fmt.Errorf("the bridge %s exists: another node runs on this machine (make node-down stops it), or one crashed (make node-down cleans up after it)", Bridge)
	}
	return nil
}

// Start starts containerd, imports the image archives (the sandbox image,
// SandboxImage, among them), starts CoreDNS, kube-proxy and kubelet, and
// waits until the node is Ready. On error the caller still calls Stop.
func (n *Node) Start(ctx context.Context, c *testcluster.Cluster, images ...string) error {
	n.cluster = c
	if err := n.startContainerd(ctx); err != nil {
		return err
	}
	for _, archive := range images {
		if err := n.ImportImage(ctx, archive); err != nil {
			return err
		}
	}
	if err := n.HasImages(ctx, SandboxImage); err != nil {
		return err
	}
	if err := n.startDNS(ctx); err != nil {
		return err
	}
	if err := n.startKubeProxy(); err != nil {
		return err
	}
	if err := n.startKubelet(); err != nil {
		return err
	}
	return n.poll(ctx, "node "+n.Name+" Ready", 90*time.Second, func(ctx context.Context) error {
		node, err := c.Client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("%s: %s", cond.Reason, cond.Message)
			}
		}
		return errors.New("no Ready condition yet")
	})
}

// Preflight says what this machine lacks to run a node, naming each thing
// and how to get it: root, cgroups, overlayfs, the Debian packages.
func Preflight() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (containerd, kubelet and the bridge need it)")
	}
	if fs, err := os.ReadFile("/proc/filesystems"); err != nil || !bytes.Contains(fs, []byte("overlay")) {
		missing = append(missing, "overlayfs in the kernel (/proc/filesystems has no overlay)")
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory"); err != nil {
		if _, err2 := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err2 != nil {
			missing = append(missing, "cgroups (neither a v1 memory hierarchy nor cgroup v2 is mounted at /sys/fs/cgroup)")
		}
	}
	if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err != nil {
		missing = append(missing, "bridge netfilter in the kernel (/proc/sys/net/bridge/bridge-nf-call-iptables)")
	}
	for _, p := range []struct{ cmd, pkg string }{
		{"containerd", "containerd"}, {"containerd-shim-runc-v2", "containerd"}, {"ctr", "containerd"},
		{"runc", "runc"}, {"iptables", "iptables"}, {"conntrack", "conntrack"}, {"ip", "iproute2"},
	} {
		if _, err := exec.LookPath(p.cmd); err != nil {
			missing = append(missing, fmt.Sprintf("%s (apt-get install -y %s)", p.cmd, p.pkg))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("this machine cannot run a node: missing %s", strings.Join(missing, "; "))
	}
	return nil
}

// network gives the bridge the node's address and sets the sysctls a
// node needs: forwarding, and bridged traffic through iptables (a pod's
// answer to another pod that reached it through a Service IP is bridged, and
// must be translated back).
func (n *Node) network() error {
	if err := n.sysctl("net/ipv4/ip_forward", "1"); err != nil {
		return err
	}
	if err := n.sysctl("net/bridge/bridge-nf-call-iptables", "1"); err != nil {
		return err
	}
	// The kubelet sets these; they are put back on Stop.
	for _, k := range []string{"vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops"} {
		if err := n.sysctl(k, ""); err != nil {
			return err
		}
	}
	ip := func(args ...string) error {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
		return nil
	}
	if err := ip("addr", "add", Address+"/24", "dev", Bridge); err != nil {
		return err
	}
	if err := ip("link", "set", Bridge, "up"); err != nil {
		return err
	}
	// Service IPs through the bridge too: a packet to one that kube-proxy
	// has not translated yet (its rules lag a new Service by a second or
	// so) then goes nowhere, instead of out through the default route to
	// whatever answers there (on this VM a proxy answered 404, and the
	// keep-alive connection stayed with it). Removed with the bridge.
	if err := ip("route", "add", ServiceCIDR, "dev", Bridge, "src", Address); err != nil {
		return err
	}
	// The CNI configuration: the bridge, host-local addresses from the
	// node's /24, hairpin (a pod reaching itself through its Service).
	conf := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "trackrouter-node",
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q, "gateway": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, Bridge, filepath.Join(n.Dir, "cni-ipam"), PodCIDR, Address)
	return os.WriteFile(filepath.Join(n.Dir, "cni", "10-trackrouter-node.conflist"), []byte(conf), 0o600)
}

// sysctl records a value and sets it (value "" only records it).
func (n *Node) sysctl(key, value string) error {
	path := filepath.Join("/proc/sys", key)
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("sysctl %s: %w", key, err)
	}
	n.mu.Lock()
	if _, ok := n.sysctls[key]; !ok {
		n.sysctls[key] = strings.TrimSpace(string(old))
		// Also on disk: Clean puts them back after a crash.
		f, err := os.OpenFile(filepath.Join(n.Dir, "sysctls"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err == nil {
			fmt.Fprintf(f, "%s=%s\n", key, n.sysctls[key])
			f.Close()
		}
	}
	n.mu.Unlock()
	if value == "" {
		return nil
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

func (n *Node) startContainerd(ctx context.Context) error {
	d := filepath.Join(n.Dir, "containerd")
	// restrict_oom_score_adj: this kind of VM lacks CAP_SYS_RESOURCE in its
	// bounding set, so a negative oom_score_adj is refused even for root and
	// every sandbox fails to start without it.
	conf := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
`, filepath.Join(d, "root"), filepath.Join(d, "state"), n.sock, n.sock+".ttrpc", SandboxImage,
		filepath.Join(n.bin, "cni"), filepath.Join(n.Dir, "cni"))
	path := filepath.Join(d, "config.toml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return err
	}
	if err := n.start("containerd", "containerd", "--config", path); err != nil {
		return err
	}
	return n.poll(ctx, "containerd", 30*time.Second, func(ctx context.Context) error {
		_, err := n.ctr(ctx, "version")
		return err
	})
}

// ctr runs containerd's client on the node's containerd, in the namespace
// the kubelet uses.
func (n *Node) ctr(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", n.sock, "--namespace", "k8s.io"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// ImportImage imports an OCI archive (hack/image/build.sh's) into the
// node's containerd, every image in it under its name: pods then run it
// with imagePullPolicy IfNotPresent or Never.
func (n *Node) ImportImage(ctx context.Context, archive string) error {
	if _, err := os.Stat(archive); err != nil {
		return fmt.Errorf("image archive: %w (build it with make image)", err)
	}
	_, err := n.ctr(ctx, "images", "import", "--all-platforms", archive)
	return err
}

// HasImages says which of the images the node lacks, by name, and how to
// load them.
func (n *Node) HasImages(ctx context.Context, names ...string) error {
	out, err := n.ctr(ctx, "images", "list", "--quiet")
	if err != nil {
		return err
	}
	have := make(map[string]bool)
	for _, name := range strings.Fields(string(out)) {
		have[name] = true
	}
	var missing []string
	for _, name := range names {
		if !have[name] && !have["docker.io/"+name] {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("image %s is not loaded on node %s: build it with make image (hack/image/build.sh) and import its archive", strings.Join(missing, ", "), n.Name)
	}
	return nil
}

// startDNS runs CoreDNS on the node's address: the cluster's DNS, as a
// node-local cache would be (RestartDNS restarts it).
func (n *Node) startDNS(ctx context.Context) error {
	corefile := fmt.Sprintf(`.:53 {
    bind %s
    errors
    ready 127.0.0.1:%d
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig %s
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    forward . /etc/resolv.conf
    cache 5
}
`, Address, n.port("dns-ready"), n.cluster.Kubeconfig)
	path := filepath.Join(n.Dir, "Corefile")
	if err := os.WriteFile(path, []byte(corefile), 0o600); err != nil {
		return err
	}
	if err := n.start("coredns", filepath.Join(n.bin, "coredns"), "-conf", path); err != nil {
		return err
	}
	return n.poll(ctx, "CoreDNS ready", 30*time.Second, func(ctx context.Context) error {
		return httpOK(ctx, fmt.Sprintf("http://127.0.0.1:%d/ready", n.port("dns-ready")))
	})
}

// RestartDNS stops CoreDNS and starts it again, as a node-local DNS
// restarts: for the time between, the pods' DNS queries go unanswered.
func (n *Node) RestartDNS(ctx context.Context) error {
	n.StopDNS()
	return n.StartDNS(ctx)
}

// StopDNS stops CoreDNS: the pods' DNS queries are refused (nothing
// listens on the node's port 53) until StartDNS.
func (n *Node) StopDNS() { n.stop("coredns") }

// StartDNS starts CoreDNS and waits until it is ready.
func (n *Node) StartDNS(ctx context.Context) error { return n.startDNS(ctx) }

func (n *Node) startKubeProxy() error {
	conf := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: %s
hostnameOverride: %s
bindAddress: %s
healthzBindAddress: 127.0.0.1:%d
metricsBindAddress: 127.0.0.1:%d
clientConnection:
  kubeconfig: %s
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  localhostNodePorts: false
`, PodCIDR, n.Name, Address, n.port("proxy-healthz"), n.port("proxy-metrics"), n.cluster.Kubeconfig)
	path := filepath.Join(n.Dir, "kube-proxy.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return err
	}
	return n.start("kube-proxy", filepath.Join(n.bin, "kube-proxy"), "--config", path)
}

func (n *Node) startKubelet() error {
	cert, key, err := n.cluster.ClientCert("system:node:"+n.Name, "system:nodes")
	if err != nil {
		return err
	}
	kc := filepath.Join(n.Dir, "kubelet.kubeconfig")
	if err := n.cluster.WriteKubeconfig(kc, cert, key); err != nil {
		return err
	}
	for _, h := range cgroupHierarchies() {
		if err := os.MkdirAll(filepath.Join(h, cgroupRoot), 0o755); err != nil {
			return fmt.Errorf("cgroup %s: %w", h, err)
		}
	}
	conf := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %s
failSwapOn: false
containerRuntimeEndpoint: unix://%s
staticPodPath: %s
podLogsDir: %s
address: %s
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
clusterDNS: [%s]
clusterDomain: cluster.local
serializeImagePulls: false
imageGCHighThresholdPercent: 100
evictionHard: {memory.available: "100Mi"}
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %s}
authorization:
  mode: Webhook
`, cgroupRoot, n.sock, filepath.Join(n.Dir, "manifests"), filepath.Join(n.Dir, "pod-logs"), Address,
		n.port("kubelet"), n.port("kubelet-healthz"), Address, n.cluster.CAFile())
	path := filepath.Join(n.Dir, "kubelet.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return err
	}
	return n.start("kubelet", filepath.Join(n.bin, "kubelet"),
		"--config="+path,
		"--kubeconfig="+kc,
		"--root-dir="+filepath.Join(n.Dir, "kubelet"),
		"--cert-dir="+filepath.Join(n.Dir, "pki"),
		"--hostname-override="+n.Name,
		"--node-ip="+Address,
	)
}

// port is a free port for one of the node's listeners, chosen once.
func (n *Node) port(name string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if p, ok := n.ports[name]; ok {
		return p
	}
	p, err := ports.Free() // below the ephemeral range: no outgoing connection takes it meanwhile
	if err != nil {
		panic(fmt.Sprintf("no free port on loopback: %v", err))
	}
	n.ports[name] = p
	return p
}

// LogPath is the log file of one of the node's processes (containerd,
// coredns, kube-proxy, kubelet).
func (n *Node) LogPath(name string) string { return n.procs.LogPath(name) }

// PodLogs is the directory of the containers' logs, one directory per pod.
func (n *Node) PodLogs() string { return filepath.Join(n.Dir, "pod-logs") }

func (n *Node) start(name, path string, args ...string) error {
	return n.procs.Start(name, path, args...)
}

func (n *Node) stop(name string) { n.procs.Stop(name) }

func (n *Node) poll(ctx context.Context, what string, timeout time.Duration, check func(context.Context) error) error {
	return n.procs.Poll(ctx, what, 200*time.Millisecond, timeout, check)
}

// Stop stops the node's processes and its pods' containers, and undoes
// everything it changed on the host. The containers are killed through
// their cgroups (all at once: one by one through containerd took minutes
// for a few dozen pods), their shims with them.
func (n *Node) Stop() {
	for _, name := range []string{"kubelet", "kube-proxy", "coredns"} {
		n.stop(name)
	}
	for i := 0; i < 50 && killCgroups() > 0; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	n.stop("containerd")
	Clean(n.Dir, n.bin)
}

// KillContainer SIGKILLs a container's main process, as the kernel's OOM
// killer or a crash would: id is a pod status's containerID
// (containerd://ID). The kubelet then restarts it.
func (n *Node) KillContainer(ctx context.Context, id string) error {
	id = strings.TrimPrefix(id, "containerd://")
	if id == "" {
		return errors.New("kill: no container ID")
	}
	_, err := n.ctr(ctx, "tasks", "kill", "--signal", "SIGKILL", id)
	return err
}
