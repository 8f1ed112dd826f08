{{/* Common labels. */}}
{{- define "rauta.labels" -}}
app.kubernetes.io/name: rauta
app.kubernetes.io/part-of: rauta
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "rauta.selector" -}}
app.kubernetes.io/name: rauta
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rauta.image" -}}
{{ .repository }}:{{ .tag | default $.appVersion }}
{{- end -}}
