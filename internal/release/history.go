package release

import (
	"context"
	"encoding/json"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/trackrouter/trackrouter/weights"
)

// AnnotationHistory holds, on the spec ConfigMap, the changes made to it
// by trackctl and track-controller: a JSON list, oldest first, of the
// last HistoryLimit entries.
const (
	AnnotationHistory = "trackrouter.dev/history"
	HistoryLimit      = 20
)

// HistoryEntry is one change, as recorded on the ConfigMap and printed by
// trackctl history -o json.
type HistoryEntry struct {
	Time    time.Time `json:"time"`
	User    string    `json:"user"`
	Command string    `json:"command"`
	Reason  string    `json:"reason,omitempty"`
	// Changes are "field old->new", the previous values included.
	Changes []string `json:"changes"`
	// From is the ConfigMap's resourceVersion the change was made on.
	From string `json:"from,omitempty"`
	// Commit is the git commit (file mode only).
	Commit string `json:"commit,omitempty"`
}

// ReadHistory is the history recorded on cm; a damaged annotation starts
// over.
func ReadHistory(cm *corev1.ConfigMap) []HistoryEntry {
	var h []HistoryEntry
	if v := cm.Annotations[AnnotationHistory]; v != "" {
		json.Unmarshal([]byte(v), &h)
	}
	return h
}

// AddHistory returns cm's history annotation value with e appended, the
// oldest entries beyond HistoryLimit dropped.
func AddHistory(cm *corev1.ConfigMap, e HistoryEntry) string {
	hist := append(ReadHistory(cm), e)
	if len(hist) > HistoryLimit {
		hist = hist[len(hist)-HistoryLimit:]
	}
	b, _ := json.Marshal(hist)
	return string(b)
}

// WriteSpec writes edited as cm's spec (the key service.yaml; the rest of
// cm as read) with entry appended to its history: the one write of a spec
// that trackctl's release commands and the pipeline share. The update
// carries cm's resourceVersion: if anyone changed the ConfigMap since it
// was read, the API server refuses (a Conflict) and nothing is written.
func WriteSpec(ctx context.Context, client kubernetes.Interface, cm *corev1.ConfigMap, edited []byte, entry HistoryEntry, fieldManager string) (*corev1.ConfigMap, error) {
	out := cm.DeepCopy()
	out.Data[weights.DataKey] = string(edited)
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[AnnotationHistory] = AddHistory(cm, entry)
	return client.CoreV1().ConfigMaps(cm.Namespace).Update(ctx, out, metav1.UpdateOptions{FieldManager: fieldManager})
}
