{{- define "ai-app.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ai-app.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ai-app.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ai-app.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ai-app.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{ include "ai-app.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ai-app
environment: {{ .Values.global.environment }}
{{- end }}

{{- define "ai-app.image" -}}
{{- printf "%s:%s" .repository (.tag | toString) }}
{{- end }}

{{- define "ai-app.postgresqlEnv" -}}
- {name: POSTGRESQL_HOST, value: {{ .Values.postgresql.host | quote }}}
- {name: POSTGRESQL_PORT, value: {{ .Values.postgresql.port | quote }}}
- {name: POSTGRESQL_DATABASE, value: {{ .Values.postgresql.database | quote }}}
- {name: POSTGRESQL_SSL_MODE, value: {{ .Values.postgresql.sslMode | default "require" | quote }}}
{{- end }}
