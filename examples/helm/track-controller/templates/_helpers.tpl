{{/* The name of every object: the release's (track-controller by default,
as in examples/install). */}}
{{- define "tc.name" -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]{0,43}[a-z0-9])?$" .Release.Name) -}}
{{- fail (printf "release name %q: want a DNS-1035 label of at most 45 characters (lowercase letters, digits, '-'; a letter first): it names a Service, a Secret and a webhook" .Release.Name) -}}
{{- end -}}
{{ .Release.Name }}
{{- end -}}

{{/* Labels Helm's conventions add to every object. */}}
{{- define "tc.labels" -}}
app.kubernetes.io/name: track-controller
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | trunc 63 | trimAll "_.-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tc.alertSecret" -}}{{ .Values.alerts.secretName | default (printf "%s-alerts" .Release.Name) }}{{- end -}}
