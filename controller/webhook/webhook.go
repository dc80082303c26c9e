// Package webhook is track-controller's admission webhook for spec
// ConfigMaps: it refuses an invalid spec (naming the field and line) and a
// release moved by someone without the right, and keeps its own CA and
// serving certificate in a Secret (the leader makes and rotates them;
// every replica serves them).
package webhook

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/internal/contract"
	"github.com/trackrouter/trackrouter/internal/health"
	"github.com/trackrouter/trackrouter/internal/pipeline"
	"github.com/trackrouter/trackrouter/weights"
)

// Config is the admission webhook: every replica serves it; the
// leader keeps its certificate (in a Secret, so that every replica serves
// the same) and the webhook configuration's caBundle.
type Config struct {
	Addr string // listen address, e.g. ":9443"; empty: no webhook
	// Secret ("namespace/name") holds the webhook's own CA and serving
	// certificate (ca.crt, ca.key, tls.crt, tls.key).
	Secret string
	// Configuration is the ValidatingWebhookConfiguration whose caBundle
	// the leader keeps equal to the CA; empty: the caBundle is the
	// user's (cert-manager's, say) and the Secret is only read.
	Configuration string
	// DNSNames and IPs the serving certificate is for (the webhook
	// Service's names, or 127.0.0.1 for a local API server).
	DNSNames []string
	IPs      []net.IP
	// Validity of a serving certificate (default 90 days); a new one is
	// made when less than RotateBefore is left (default a third of it).
	Validity, RotateBefore time.Duration
	// Refresh is how often every replica reads the Secret, and the leader
	// checks it (default 30s).
	Refresh time.Duration
}

// Path is where the admission reviews are served.
const Path = "/validate"

const (
	caValidity    = 10 * 365 * 24 * time.Hour
	keyCACert     = "ca.crt"
	keyCAKey      = "ca.key"
	keyServeCert  = "tls.crt"
	keyServeKey   = "tls.key"
	webhookFieldM = "track-controller-webhook"
)

func (w *Config) defaults() {
	if w.Validity == 0 {
		w.Validity = 90 * 24 * time.Hour
	}
	if w.RotateBefore == 0 {
		w.RotateBefore = w.Validity / 3
	}
	if w.Refresh == 0 {
		w.Refresh = 30 * time.Second
	}
}

// Server serves the admission review and the certificate in the Secret.
type Server struct {
	cfg    Config
	client kubernetes.Interface
	log    *slog.Logger
	cert   atomic.Pointer[tls.Certificate]
	// Served counts admission reviews answered, Refused those refused.
	Served, Refused atomic.Int64
}

// New makes the Server; Serve serves it, Keep keeps its certificate.
func New(cfg Config, client kubernetes.Interface, log *slog.Logger) *Server {
	cfg.defaults()
	return &Server{cfg: cfg, client: client, log: log}
}

// Refresh is how often the Secret is read, and kept by the leader.
func (w *Server) Refresh() time.Duration { return w.cfg.Refresh }

func (w *Server) secretRef() (string, string) {
	ns, name, _ := strings.Cut(w.cfg.Secret, "/")
	return ns, name
}

// Serve runs the HTTPS server until ctx ends, with the certificate the
// Secret holds (read again every Refresh): a rotated certificate is served
// from the next handshake on.
func (w *Server) Serve(ctx context.Context) error {
	ln, err := net.Listen("tcp", w.cfg.Addr)
	if err != nil {
		return fmt.Errorf("webhook on %s: %w", w.cfg.Addr, err)
	}
	go func() {
		for {
			if err := w.load(ctx); err != nil && ctx.Err() == nil {
				w.log.Warn("webhook: cannot read its certificate yet", "secret", w.cfg.Secret, "err", err)
			}
			wait := w.cfg.Refresh
			if w.cert.Load() == nil {
				wait = 2 * time.Second // until the leader has made it
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc(Path, w.handle)
	// Handshakes refused before the certificate exists are the API
	// server's retries: debug, not noise in the log.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(w.log.Handler(), slog.LevelDebug), TLSConfig: &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := w.cert.Load(); c != nil {
				return c, nil
			}
			return nil, errors.New("no certificate yet: the leader makes it in Secret " + w.cfg.Secret)
		},
	}}
	w.log.Info("serving the admission webhook", "addr", ln.Addr().String(), "path", Path)
	return health.ServeUntil(ctx, srv, ln, true)
}

// load reads the serving certificate from the Secret.
func (w *Server) load(ctx context.Context) error {
	ns, name := w.secretRef()
	s, err := w.client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	c, err := tls.X509KeyPair(s.Data[keyServeCert], s.Data[keyServeKey])
	if err != nil {
		return fmt.Errorf("secret %s: %w", w.cfg.Secret, err)
	}
	if old := w.cert.Load(); old == nil || !bytes.Equal(old.Certificate[0], c.Certificate[0]) {
		w.cert.Store(&c)
		w.log.Info("webhook: serving certificate loaded", "secret", w.cfg.Secret)
	}
	return nil
}

// Keep is the leader's: the Secret holds a CA and a serving certificate
// with more than RotateBefore left, and the webhook configuration's
// caBundle is the CA. Writes happen only when something is to be made.
func (w *Server) Keep(ctx context.Context, now time.Time) error {
	if w.cfg.Configuration == "" {
		return nil // the Secret and the caBundle are cert-manager's (or yours): only read
	}
	ns, name := w.secretRef()
	s, err := w.client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	exists := err == nil
	switch {
	case apierrors.IsNotFound(err):
		s = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{contract.LabelManagedBy: contract.ManagedBy}},
			Type: corev1.SecretTypeOpaque, Data: map[string][]byte{}}
	case err != nil:
		return err
	}
	caCert, caKey, err := parseCA(s.Data[keyCACert], s.Data[keyCAKey])
	changed := false
	if err != nil || now.After(caCert.NotAfter.Add(-w.cfg.RotateBefore)) {
		certPEM, keyPEM, err := newCA(now)
		if err != nil {
			return err
		}
		s.Data[keyCACert], s.Data[keyCAKey] = certPEM, keyPEM
		if caCert, caKey, err = parseCA(certPEM, keyPEM); err != nil {
			return err
		}
		delete(s.Data, keyServeCert) // signed by the old CA
		changed = true
	}
	if !w.servingFresh(s.Data[keyServeCert], caCert, now) {
		certPEM, keyPEM, err := newServing(caCert, caKey, w.cfg.DNSNames, w.cfg.IPs, now, w.cfg.Validity)
		if err != nil {
			return err
		}
		s.Data[keyServeCert], s.Data[keyServeKey] = certPEM, keyPEM
		changed = true
	}
	if changed {
		if !exists {
			_, err = w.client.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{FieldManager: webhookFieldM})
		} else {
			_, err = w.client.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{FieldManager: webhookFieldM})
		}
		if err != nil {
			return fmt.Errorf("write Secret %s: %w", w.cfg.Secret, err)
		}
		w.log.Info("webhook: certificate made", "secret", w.cfg.Secret, "notAfter", now.Add(w.cfg.Validity).UTC().Format(time.RFC3339))
	}
	vwc, err := w.client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, w.cfg.Configuration, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read ValidatingWebhookConfiguration %s: %w", w.cfg.Configuration, err)
	}
	var patch []map[string]any
	for i, h := range vwc.Webhooks {
		if !bytes.Equal(h.ClientConfig.CABundle, s.Data[keyCACert]) {
			patch = append(patch, map[string]any{"op": "replace", "path": fmt.Sprintf("/webhooks/%d/clientConfig/caBundle", i), "value": s.Data[keyCACert]})
		}
	}
	if len(patch) == 0 {
		return nil
	}
	patch = append([]map[string]any{{"op": "test", "path": "/metadata/resourceVersion", "value": vwc.ResourceVersion}}, patch...)
	b, _ := json.Marshal(patch)
	if _, err := w.client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Patch(ctx, w.cfg.Configuration, types.JSONPatchType, b, metav1.PatchOptions{FieldManager: webhookFieldM}); err != nil {
		return fmt.Errorf("patch the caBundle of ValidatingWebhookConfiguration %s: %w", w.cfg.Configuration, err)
	}
	w.log.Info("webhook: caBundle set", "configuration", w.cfg.Configuration)
	return nil
}

// servingFresh reports whether certPEM is signed by ca and has more than
// RotateBefore left.
func (w *Server) servingFresh(certPEM []byte, ca *x509.Certificate, now time.Time) bool {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return false
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil || c.CheckSignatureFrom(ca) != nil {
		return false
	}
	return now.Before(c.NotAfter.Add(-w.cfg.RotateBefore))
}

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

// newCA makes the webhook's own CA.
func newCA(now time.Time) (certPEM, keyPEM []byte, err error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "track-controller webhook CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(caValidity), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("no CA")
	}
	c, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	k, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	return c, k, nil
}

// newServing makes a serving certificate for names and ips, signed by ca.
func newServing(ca *x509.Certificate, caKey *ecdsa.PrivateKey, names []string, ips []net.IP, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	cn := "track-controller webhook"
	if len(names) > 0 {
		cn = names[0]
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: cn}, DNSNames: names, IPAddresses: ips,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(validity),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// handle answers an AdmissionReview for a labelled spec ConfigMap: the
// same validation as trackctl validate (weights.ParseService), refused
// with every error's field and line inside the service.yaml key; warnings
// come back as admission warnings (kubectl prints them); a second spec of
// a service the namespace already has is refused.
func (w *Server) handle(rw http.ResponseWriter, req *http.Request) {
	// A spec of 1 MiB of characters JSON escapes six times over, in the
	// object and the old object of an update.
	body, err := io.ReadAll(io.LimitReader(req.Body, 32<<20))
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(rw, "want an admission.k8s.io/v1 AdmissionReview", http.StatusBadRequest)
		return
	}
	resp := w.review(req.Context(), review.Request)
	resp.UID = review.Request.UID
	w.Served.Add(1)
	if !resp.Allowed {
		w.Refused.Add(1)
	}
	review.Response, review.Request = resp, nil
	rw.Header().Set("Content-Type", "application/json")
	json.NewEncoder(rw).Encode(review)
}

func (w *Server) review(ctx context.Context, r *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	allow := &admissionv1.AdmissionResponse{Allowed: true}
	if r.Kind.Kind != "ConfigMap" || r.Operation == admissionv1.Delete {
		return allow
	}
	var cm corev1.ConfigMap
	if err := json.Unmarshal(r.Object.Raw, &cm); err != nil {
		return refuse("not a ConfigMap: " + err.Error())
	}
	service, labelled := cm.Labels[weights.ServiceLabel]
	if !labelled {
		return allow // the objectSelector sends only labelled ones
	}
	if service == "" {
		return refuse(fmt.Sprintf("label %s is empty: set it to the spec's service name, or remove it", weights.ServiceLabel))
	}
	ns := r.Namespace
	name := cm.Name
	if name == "" {
		name = r.Name
	}
	text, ok := cm.Data[weights.DataKey]
	if !ok {
		return refuse(fmt.Sprintf("ConfigMap %s/%s is labelled %s=%s but has no key %s: add the spec under it, or remove the label", ns, name, weights.ServiceLabel, service, weights.DataKey))
	}
	spec, err := weights.ParseService(weights.ConfigMapSource(ns, name), []byte(text))
	if err != nil {
		return refuse(fmt.Sprintf("the spec in key %s is invalid (nothing was changed):\n%v", weights.DataKey, err))
	}
	// As trackctl validate: the spec renders (every token it writes into
	// haproxy.cfg checked). haproxy -c is not run here (the sidecar runs
	// it before any reload; the webhook stays fast).
	if _, err := haproxyconf.Render(spec, haproxyconf.Options{Namespace: ns}); err != nil {
		return refuse(fmt.Sprintf("the spec in key %s does not render (nothing was changed): %v", weights.DataKey, err))
	}
	if spec.Service != service {
		return refuse(fmt.Sprintf("label %s=%s names another service than the spec's service: %s; make them equal", weights.ServiceLabel, service, spec.Service))
	}
	others, err := w.client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: weights.ServiceLabel + "=" + service})
	if err != nil {
		w.log.Warn("webhook: cannot list the namespace's specs; the one-spec-per-service check is skipped", "namespace", ns, "err", err)
	} else {
		for _, o := range others.Items {
			if o.Name != name {
				return refuse(fmt.Sprintf("service %s already has its spec in ConfigMap %s/%s: one spec per service and namespace; edit that one, or delete it first", service, ns, o.Name))
			}
		}
	}
	if refused := w.promotion(ctx, r, ns, name, spec); refused != nil {
		return refused
	}
	for _, wr := range spec.Warnings {
		allow.Warnings = append(allow.Warnings, wr.Error())
	}
	return allow
}

// VerbPromote on releases.trackrouter.dev/SERVICE lets a spec edit move a
// build past the pipeline: see movesRelease.
const (
	releasesGroup    = "trackrouter.dev"
	releasesResource = "releases"
	VerbPromote      = "promote"
)

// promotion refuses an update that moves a build past the pipeline (see
// movesRelease) from a caller without the verb promote on the service's
// releases, as a SubjectAccessReview of the caller the API server
// authenticated says; nil when it may go on. A review that cannot be made
// refuses (the webhook fails closed).
func (w *Server) promotion(ctx context.Context, r *admissionv1.AdmissionRequest, ns, name string, spec *weights.Spec) *admissionv1.AdmissionResponse {
	var moves []string
	switch r.Operation {
	case admissionv1.Update:
		var before corev1.ConfigMap
		if err := json.Unmarshal(r.OldObject.Raw, &before); err == nil && before.Labels[weights.ServiceLabel] != spec.Service {
			// Labelled again: while it was no spec, nothing checked its
			// edits; it is compared with what its release last saw.
			moves = w.movesSeen(ctx, ns, spec)
			break
		}
		var old *weights.Spec
		if err := json.Unmarshal(r.OldObject.Raw, &before); err == nil {
			old, _ = weights.ParseService(weights.ConfigMapSource(ns, name), []byte(before.Data[weights.DataKey]))
		}
		moves = movesRelease(old, spec)
	case admissionv1.Create:
		// A spec deleted and created again (kubectl replace --force) is
		// compared with what its release last saw running.
		moves = w.movesSeen(ctx, ns, spec)
	}
	if len(moves) == 0 {
		return nil
	}
	extra := map[string]authzv1.ExtraValue{}
	for k, v := range r.UserInfo.Extra {
		extra[k] = authzv1.ExtraValue(v)
	}
	sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User: r.UserInfo.Username, Groups: r.UserInfo.Groups, UID: r.UserInfo.UID, Extra: extra,
		ResourceAttributes: &authzv1.ResourceAttributes{Namespace: ns, Verb: VerbPromote, Group: releasesGroup, Resource: releasesResource, Name: spec.Service},
	}}
	res, err := w.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		w.log.Warn("webhook: cannot review the caller's right to promote: refused", "user", r.UserInfo.Username, "err", err)
		return refuse(fmt.Sprintf("this edit moves a release (%s) and track-controller cannot check that %s may (%v): nothing was changed; try again", strings.Join(moves, "; "), r.UserInfo.Username, err))
	}
	if res.Status.Allowed {
		return nil
	}
	return refuse(fmt.Sprintf("%s may not move a release of %s in %s past its pipeline: %s. That takes the verb %s on %s.%s/%s (the ClusterRole trackrouter-release, bound in the namespace); "+
		"deploy on the first stage (%s) and let the pipeline move the build, or ask who runs releases (nothing was changed)",
		r.UserInfo.Username, spec.Service, ns, strings.Join(moves, "; "), VerbPromote, releasesResource, releasesGroup, spec.Service, spec.Stages[0]))
}

// movesSeen lists the stages after the first whose version in spec is
// not the one the service's release state last saw: a spec created or
// labelled again that would move a build past the pipeline, or drop the
// pipeline and move it (so a spec without one is compared too). The
// release ConfigMap is kept from the team (release-access.yaml: it goes
// with its spec, or by who may promote); without one, the service is new.
func (w *Server) movesSeen(ctx context.Context, ns string, spec *weights.Spec) []string {
	if len(spec.Stages) < 2 {
		return nil
	}
	rel, err := w.client.CoreV1().ConfigMaps(ns).Get(ctx, pipeline.ConfigMapName(spec.Service), metav1.GetOptions{})
	if err != nil || rel.Labels[pipeline.LabelReleaseOf] != spec.Service {
		return nil // no release yet: nothing to move past
	}
	st, _, err := pipeline.Read(rel.Data)
	if err != nil || st.Seen == nil {
		return nil
	}
	var out []string
	for _, t := range spec.Stages[1:] {
		if v, ok := st.Seen[t]; ok && v != spec.Tracks[t].Version {
			out = append(out, fmt.Sprintf("tracks.%s.version %s->%s (as the release last saw it)", t, v, spec.Tracks[t].Version))
		}
	}
	return out
}

// movesRelease lists what an edit from old to new changes of a release
// beyond a deploy, when either has a pipeline: a version of a stage after
// the first (a promotion, or a rollback, by hand: the pipeline follows
// either), a stage's gates or analysis, the stages or their order. A
// deploy (the first stage's version) and everything else are not.
func movesRelease(old, new *weights.Spec) []string {
	if !pipeline.Uses(new) && (old == nil || !pipeline.Uses(old)) {
		return nil
	}
	if old == nil {
		return []string{"the spec before this edit did not parse, so what it moves cannot be told"}
	}
	first := "tracks." + new.Stages[0] + ".version"
	var out []string
	for _, c := range weights.SpecChanges(old, new) {
		f := c.Field
		version := strings.HasPrefix(f, "tracks.") && strings.HasSuffix(f, ".version") && f != first
		if version || f == "stages" || strings.HasPrefix(f, "tracks.") && (strings.HasSuffix(f, ".gates") || strings.HasSuffix(f, ".analysis")) {
			out = append(out, c.String())
		}
	}
	return out
}

func refuse(msg string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusUnprocessableEntity,
		Reason: metav1.StatusReasonInvalid, Message: msg}}
}
