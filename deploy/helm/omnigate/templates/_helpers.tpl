{{- define "omnigate.labels" -}}
app.kubernetes.io/name: omnigate
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
