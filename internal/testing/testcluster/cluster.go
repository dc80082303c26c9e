// Package testcluster runs a real Kubernetes control plane for tests: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler and kwok (fake
// nodes whose pods become Running with IPs), as child processes built from
// Go modules by hack/kube/build.sh. Every process dies with the test binary
// (Pdeathsig) and is stopped by PID on Stop.
package testcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/trackrouter/trackrouter/internal/testing/ports"
	"github.com/trackrouter/trackrouter/internal/testing/procs"
)

// FakeNodeAnnotation marks the nodes kwok manages.
const FakeNodeAnnotation = "kwok.x-k8s.io/node"

// Options say how to start a cluster.
type Options struct {
	BinDir string // from EnsureBinaries
	Dir    string // state, certificates and logs; must exist
	Nodes  int    // fake nodes to add; default 2, -1 for none
	// BindAddress is where the API server listens and what it advertises
	// (the kubernetes Service's endpoint): 127.0.0.1 by default; a real
	// node's address (testnode.Address) when its pods must reach the API.
	BindAddress string
}

// Cluster is a running control plane.
type Cluster struct {
	Dir        string
	Kubeconfig string // path of an admin kubeconfig, for kubectl
	Config     *rest.Config
	Client     kubernetes.Interface

	bin   string
	host  string // the API server's address
	pki   *pki
	ports map[string]int
	procs *procs.Group
}

// Start starts every component, waits until the API server is ready, the
// controller manager has created the default service account, and the
// fake nodes are Ready. On error everything started is stopped.
func Start(ctx context.Context, opt Options) (_ *Cluster, err error) {
	if opt.Nodes == 0 {
		opt.Nodes = 2
	}
	if opt.BindAddress == "" {
		opt.BindAddress = "127.0.0.1"
	}
	c := &Cluster{Dir: opt.Dir, bin: opt.BinDir, host: opt.BindAddress, ports: make(map[string]int),
		procs: &procs.Group{LogDir: filepath.Join(opt.Dir, "logs"), Grace: 3 * time.Second}}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	for _, d := range []string{"pki", "logs", "etcd"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	if c.pki, err = writePKI(filepath.Join(c.Dir, "pki"), net.ParseIP(c.host)); err != nil {
		return nil, fmt.Errorf("write certificates: %w", err)
	}
	for _, name := range []string{"etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok"} {
		if c.ports[name], err = freePort(); err != nil {
			return nil, err
		}
	}
	if err := c.startEtcd(ctx); err != nil {
		return nil, err
	}
	if err := c.StartAPIServer(ctx); err != nil {
		return nil, err
	}
	if err := c.writeKubeconfig(); err != nil {
		return nil, err
	}
	if err := c.startControllers(); err != nil {
		return nil, err
	}
	if err := c.waitServiceAccount(ctx); err != nil {
		return nil, err
	}
	if opt.Nodes > 0 {
		if err := c.AddNodes(ctx, opt.Nodes); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// freePort is a loopback port below the ephemeral range (see ports).
func freePort() (int, error) { return ports.Free() }

func (c *Cluster) url(port string) string {
	return "http://127.0.0.1:" + strconv.Itoa(c.ports[port])
}

func (c *Cluster) startEtcd(ctx context.Context) error {
	client, peer := c.url("etcd"), c.url("etcd-peer")
	if err := c.start("etcd",
		"--name=testcluster",
		"--data-dir="+filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls="+client,
		"--advertise-client-urls="+client,
		"--listen-peer-urls="+peer,
		"--initial-advertise-peer-urls="+peer,
		"--initial-cluster=testcluster="+peer,
		"--unsafe-no-fsync", // a test cluster: speed over durability
		"--quota-backend-bytes=4294967296",
	); err != nil {
		return err
	}
	return c.poll(ctx, "etcd", 30*time.Second, func(ctx context.Context) error {
		resp, err := http.Get(client + "/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("etcd /health: %s", resp.Status)
		}
		return nil
	})
}

// StartAPIServer starts kube-apiserver (again, after StopAPIServer) on the
// same port and waits until /readyz answers ok.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	p := c.pki
	// On loopback no pod reaches the API server and the kubernetes
	// Service has no endpoint; on a real node's address it has one.
	reconciler := "--endpoint-reconciler-type=none"
	if c.host != "127.0.0.1" {
		reconciler = "--advertise-address=" + c.host
	}
	if err := c.start("kube-apiserver",
		"--bind-address="+c.host,
		"--secure-port="+strconv.Itoa(c.ports["apiserver"]),
		"--etcd-servers="+c.url("etcd"),
		"--cert-dir="+filepath.Join(c.Dir, "pki"),
		"--tls-cert-file="+p.cert,
		"--tls-private-key-file="+p.key,
		"--client-ca-file="+p.caCert,
		"--service-account-key-file="+p.key,
		"--service-account-signing-key-file="+p.key,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=Node,RBAC",
		// As on OpenShift: owner references with blockOwnerDeletion need
		// update on the owner's finalizers (the shipped RBAC is tested so).
		"--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
		"--allow-privileged=true",
		"--enable-priority-and-fairness=false",
		reconciler,
		// kubectl logs, exec and port-forward on a real node's pods.
		"--kubelet-preferred-address-types=InternalIP",
		"--kubelet-client-certificate="+p.cert,
		"--kubelet-client-key="+p.key,
	); err != nil {
		return err
	}
	cfg := c.restConfig()
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	c.Config, c.Client = cfg, client
	return c.poll(ctx, "kube-apiserver", 60*time.Second, func(ctx context.Context) error {
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("%v: %s", err, body)
		}
		return nil
	})
}

// StopAPIServer stops kube-apiserver, for tests of what clients do during an
// API outage. StartAPIServer brings it back.
func (c *Cluster) StopAPIServer() { c.stop("kube-apiserver") }

func (c *Cluster) restConfig() *rest.Config {
	return &rest.Config{
		Host: "https://" + net.JoinHostPort(c.host, strconv.Itoa(c.ports["apiserver"])),
		TLSClientConfig: rest.TLSClientConfig{
			CAFile: c.pki.caCert, CertFile: c.pki.cert, KeyFile: c.pki.key,
		},
		QPS: 200, Burst: 400,
	}
}

func (c *Cluster) writeKubeconfig() error {
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	return c.WriteKubeconfig(c.Kubeconfig, c.pki.cert, c.pki.key)
}

func (c *Cluster) startControllers() error {
	kc := "--kubeconfig=" + c.Kubeconfig
	if err := c.start("kube-controller-manager", kc,
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(c.ports["controller-manager"]),
		"--root-ca-file="+c.pki.caCert,
		"--service-account-private-key-file="+c.pki.key,
		"--leader-elect=false",
		"--kube-api-qps=500", "--kube-api-burst=1000",
		"--concurrent-gc-syncs=20",
	); err != nil {
		return err
	}
	if err := c.start("kube-scheduler", kc,
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(c.ports["scheduler"]),
		"--leader-elect=false",
		"--kube-api-qps=500", "--kube-api-burst=1000",
	); err != nil {
		return err
	}
	return c.start("kwok", kc,
		"--config="+filepath.Join(c.bin, "kwok-stages.yaml"),
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector="+FakeNodeAnnotation+"=fake",
		"--node-ip=127.0.0.1",
		"--node-port="+strconv.Itoa(c.ports["kwok"]),
		"--server-address=127.0.0.1:"+strconv.Itoa(c.ports["kwok"]),
		"--tls-cert-file="+c.pki.cert,
		"--tls-private-key-file="+c.pki.key,
		"--node-lease-duration-seconds=40",
	)
}

// waitServiceAccount waits until the controller manager is working: it
// creates the default ServiceAccount, without which no pod is admitted.
func (c *Cluster) waitServiceAccount(ctx context.Context) error {
	return c.poll(ctx, "kube-controller-manager (default ServiceAccount)", 60*time.Second, func(ctx context.Context) error {
		_, err := c.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

// AddNodes adds n fake nodes that kwok manages and waits until they are Ready.
func (c *Cluster) AddNodes(ctx context.Context, n int) error {
	existing, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	first := len(existing.Items)
	for i := first; i < first+n; i++ {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name:        fmt.Sprintf("kwok-node-%d", i),
			Annotations: map[string]string{FakeNodeAnnotation: "fake"},
			Labels:      map[string]string{"type": "kwok", "kubernetes.io/hostname": fmt.Sprintf("kwok-node-%d", i)},
		}}
		if _, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create node: %w", err)
		}
	}
	return c.poll(ctx, "fake nodes Ready", 60*time.Second, func(ctx context.Context) error {
		nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		ready := 0
		for _, node := range nodes.Items {
			for _, cond := range node.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		if ready < first+n {
			return fmt.Errorf("%d of %d nodes Ready", ready, first+n)
		}
		return nil
	})
}

// poll calls check until it returns nil, a component exits, or timeout.
func (c *Cluster) poll(ctx context.Context, what string, timeout time.Duration, check func(context.Context) error) error {
	return c.procs.Poll(ctx, what, 100*time.Millisecond, timeout, check)
}

// start runs a component from the bin directory.
func (c *Cluster) start(name string, args ...string) error {
	return c.procs.Start(name, filepath.Join(c.bin, name), args...)
}

// stop stops one component (kube-apiserver may ignore SIGTERM for a while;
// a test cluster need not wait for a graceful shutdown: 3 s, then SIGKILL).
func (c *Cluster) stop(name string) { c.procs.Stop(name) }

// Stop stops every component, the API server's clients first.
func (c *Cluster) Stop() {
	for _, name := range []string{"kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"} {
		c.stop(name)
	}
}

var errNotStarted = errors.New("the test cluster did not start")

// ClientCert writes a client key pair for the user cn in groups orgs,
// signed by the cluster's CA (a real node's kubelet is
// system:node:NAME in system:nodes), and returns the files' paths.
func (c *Cluster) ClientCert(cn string, orgs ...string) (cert, key string, err error) {
	return c.pki.clientCert(cn, orgs...)
}

// WriteKubeconfig writes a kubeconfig for a client certificate to path.
func (c *Cluster) WriteKubeconfig(path, cert, key string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["testcluster"] = &clientcmdapi.Cluster{Server: c.Config.Host, CertificateAuthority: c.pki.caCert}
	cfg.AuthInfos["user"] = &clientcmdapi.AuthInfo{ClientCertificate: cert, ClientKey: key}
	cfg.Contexts["testcluster"] = &clientcmdapi.Context{Cluster: "testcluster", AuthInfo: "user"}
	cfg.CurrentContext = "testcluster"
	return clientcmd.WriteToFile(*cfg, path)
}

// CAFile is the path of the cluster's CA certificate.
func (c *Cluster) CAFile() string { return c.pki.caCert }

// Namespace creates namespace name and waits until its default
// ServiceAccount exists (pods need it).
func (c *Cluster) Namespace(tb testing.TB, name string) {
	tb.Helper()
	ctx := context.Background()
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		tb.Fatal(err)
	}
	if err := c.poll(ctx, "default ServiceAccount in "+name, time.Minute, func(ctx context.Context) error {
		_, err := c.Client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		tb.Fatal(err)
	}
}
