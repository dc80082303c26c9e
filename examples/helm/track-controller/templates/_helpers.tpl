{{/* The name of every object: the release's (track-controller by default,
as in examples/install). */}}
{{- define "tc.name" -}}{{ .Release.Name }}{{- end -}}

{{/* Labels Helm's conventions add to every object. */}}
{{- define "tc.labels" -}}
app.kubernetes.io/name: track-controller
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tc.alertSecret" -}}{{ .Values.alerts.secretName | default (printf "%s-alerts" .Release.Name) }}{{- end -}}
