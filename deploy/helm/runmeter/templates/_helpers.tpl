{{- define "runmeter.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "runmeter.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "runmeter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "runmeter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "runmeter.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "runmeter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: collector
{{- end -}}

{{- define "runmeter.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The Secret holding RUNMETER_CLICKHOUSE_URL. */}}
{{- define "runmeter.clickhouseSecret" -}}
{{- .Values.clickhouse.existingSecret | default (printf "%s-clickhouse" (include "runmeter.fullname" .)) -}}
{{- end -}}

{{- define "runmeter.tokensSecret" -}}
{{- .Values.auth.existingSecret | default (printf "%s-tokens" (include "runmeter.fullname" .)) -}}
{{- end -}}

{{/* A TOML value: strings quoted, whole numbers without an exponent, the rest as is. */}}
{{/* A list of maps: an array of tables ([[limits.spend]], [[alerts.rules]], [[alerts.to]]). */}}
{{- define "runmeter.isTables" -}}
{{- if and (kindIs "slice" .) (gt (len .) 0) -}}{{- if kindIs "map" (first .) -}}true{{- end -}}{{- end -}}
{{- end -}}

{{- define "runmeter.tomlValue" -}}
{{- if kindIs "string" . -}}{{ . | quote }}
{{- else if kindIs "map" . -}}{{- $parts := list -}}{{- range $k, $v := . -}}{{- $parts = append $parts (printf "%s = %s" ($k | quote) (include "runmeter.tomlValue" $v)) -}}{{- end -}}{ {{ join ", " $parts }} }
{{- else if kindIs "float64" . -}}{{ if eq (float64 (int64 .)) . }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else if kindIs "slice" . -}}[{{ range $i, $v := . }}{{ if $i }}, {{ end }}{{ include "runmeter.tomlValue" $v }}{{ end }}]
{{- else -}}{{ . }}
{{- end -}}
{{- end -}}

{{/* The environment every runmeter container gets: the store, the config file. */}}
{{- define "runmeter.env" -}}
- name: RUNMETER_CONFIG
  value: /etc/runmeter/runmeter.toml
- name: RUNMETER_CLICKHOUSE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "runmeter.clickhouseSecret" . }}
      key: RUNMETER_CLICKHOUSE_URL
{{- end -}}

{{- define "runmeter.migrateArgs" -}}
- db
- migrate
{{- if .Values.clickhouse.cluster }}
- --cluster
- {{ .Values.clickhouse.cluster | quote }}
{{- end }}
{{- end -}}
