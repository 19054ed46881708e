{{/*
Helpers of the moorage chart. Every helper is prefixed "moorage.".
Component-scoped helpers take a dict: (dict "ctx" $ "component" "backend").
*/}}

{{/* moorage.fullname is the name prefix of every resource: the release name. */}}
{{- define "moorage.fullname" -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* moorage.componentName is "<release>-<component>". */}}
{{- define "moorage.componentName" -}}
{{- printf "%s-%s" (include "moorage.fullname" .ctx) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* moorage.chart is the helm.sh/chart label value. */}}
{{- define "moorage.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* moorage.selectorLabels are the immutable labels a workload selects its pods by. */}}
{{- define "moorage.selectorLabels" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* moorage.labels are the recommended labels of every object. */}}
{{- define "moorage.labels" -}}
helm.sh/chart: {{ include "moorage.chart" .ctx }}
{{ include "moorage.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: moorage
{{- end -}}

{{/* moorage.instanceSelector selects every pod of the release. */}}
{{- define "moorage.instanceSelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* moorage.serviceAccountName is the ServiceAccount every pod runs as. */}}
{{- define "moorage.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "moorage.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
moorage.appImage is "repository:tag" of an application image; the tag is
required (the deploy task writes it) and may never be "latest".
*/}}
{{- define "moorage.appImage" -}}
{{- $image := (index .ctx.Values .component).image -}}
{{- $tag := required (printf "%s.image.tag is required: pass the generated image values file (the deploy task writes it), e.g. --set %s.image.tag=<content hash>" .component .component) $image.tag | toString -}}
{{- if eq $tag "latest" -}}
{{- fail (printf "%s.image.tag must not be \"latest\": use an immutable tag" .component) -}}
{{- end -}}
{{- printf "%s:%s" $image.repository $tag -}}
{{- end -}}

{{/* moorage.image is "repository:tag" of a third-party image given as .image. */}}
{{- define "moorage.image" -}}
{{- $tag := .image.tag | toString -}}
{{- if or (eq $tag "") (eq $tag "latest") -}}
{{- fail (printf "%s.image.tag must be a fixed version, not %q" .name $tag) -}}
{{- end -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}

{{/* moorage.podSecurityContext is the restricted pod security context. */}}
{{- define "moorage.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}

{{/* moorage.containerSecurityContext is the restricted container security context. */}}
{{- define "moorage.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext -}}
{{- end -}}

{{/* moorage.imagePullSecrets renders imagePullSecrets when any are configured. */}}
{{- define "moorage.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ if kindIs "map" . }}{{ .name }}{{ else }}{{ . }}{{ end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* moorage.affinity renders the component's affinity (explicit, or generated anti-affinity). */}}
{{- define "moorage.affinity" -}}
{{- $values := index .ctx.Values .component -}}
{{- if $values.affinity -}}
{{- toYaml $values.affinity -}}
{{- else if eq $values.podAntiAffinity "hard" -}}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "moorage.selectorLabels" . | nindent 10 }}
{{- else if eq $values.podAntiAffinity "soft" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "moorage.selectorLabels" . | nindent 12 }}
{{- end -}}
{{- end -}}

{{/* moorage.scheduling renders affinity, nodeSelector and tolerations of a component. */}}
{{- define "moorage.scheduling" -}}
{{- $values := index .ctx.Values .component -}}
{{- with include "moorage.affinity" . }}
affinity:
  {{- . | nindent 2 }}
{{- end }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* moorage.secretName is the chart-managed Secret of the application. */}}
{{- define "moorage.secretName" -}}
{{- include "moorage.componentName" (dict "ctx" . "component" "app") -}}
{{- end -}}

{{/* moorage.configMapName is the ConfigMap of the application settings. */}}
{{- define "moorage.configMapName" -}}
{{- include "moorage.componentName" (dict "ctx" . "component" "config") -}}
{{- end -}}

{{/* moorage.scriptsConfigMapName is the ConfigMap of the chart's scripts. */}}
{{- define "moorage.scriptsConfigMapName" -}}
{{- include "moorage.componentName" (dict "ctx" . "component" "scripts") -}}
{{- end -}}

{{/* moorage.databaseHost is the PostgreSQL host the application connects to. */}}
{{- define "moorage.databaseHost" -}}
{{- if .Values.postgresql.enabled -}}
{{- include "moorage.componentName" (dict "ctx" . "component" "postgresql") -}}
{{- else -}}
{{- required "externalDatabase.host is required when postgresql.enabled is false" .Values.externalDatabase.host -}}
{{- end -}}
{{- end -}}

{{- define "moorage.databasePort" -}}
{{- if .Values.postgresql.enabled }}5432{{ else }}{{ .Values.externalDatabase.port }}{{ end -}}
{{- end -}}

{{- define "moorage.databaseName" -}}
{{- if .Values.postgresql.enabled }}{{ .Values.postgresql.auth.database }}{{ else }}{{ .Values.externalDatabase.database }}{{ end -}}
{{- end -}}

{{- define "moorage.databaseUser" -}}
{{- if .Values.postgresql.enabled }}{{ .Values.postgresql.auth.username }}{{ else }}{{ .Values.externalDatabase.username }}{{ end -}}
{{- end -}}

{{- define "moorage.databaseSslMode" -}}
{{- if .Values.postgresql.enabled }}disable{{ else }}{{ .Values.externalDatabase.sslMode }}{{ end -}}
{{- end -}}

{{/*
moorage.databasePasswordInValues is "true" when the database password is known
at render time (so DATABASE_URL can be built inside the chart's Secret).
*/}}
{{- define "moorage.databasePasswordInValues" -}}
{{- if .Values.postgresql.enabled -}}
{{- if not .Values.postgresql.auth.existingSecret }}true{{ end -}}
{{- else -}}
{{- if not .Values.externalDatabase.existingSecret }}true{{ end -}}
{{- end -}}
{{- end -}}

{{/* moorage.databasePassword is the password from values (fails with a clear message when missing). */}}
{{- define "moorage.databasePassword" -}}
{{- if .Values.postgresql.enabled -}}
{{- required "postgresql.auth.password is required (set POSTGRES_PASSWORD in the secrets values file) or set postgresql.auth.existingSecret" .Values.postgresql.auth.password -}}
{{- else -}}
{{- required "externalDatabase.password (or postgresql.auth.password, i.e. POSTGRES_PASSWORD) is required, or set externalDatabase.existingSecret" (default .Values.postgresql.auth.password .Values.externalDatabase.password) -}}
{{- end -}}
{{- end -}}

{{/* moorage.databasePasswordSecretName is the Secret holding the database password. */}}
{{- define "moorage.databasePasswordSecretName" -}}
{{- if .Values.postgresql.enabled -}}
{{- default (include "moorage.componentName" (dict "ctx" . "component" "postgresql")) .Values.postgresql.auth.existingSecret -}}
{{- else -}}
{{- default (include "moorage.secretName" .) .Values.externalDatabase.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* moorage.databasePasswordSecretKey is the key of the password in that Secret. */}}
{{- define "moorage.databasePasswordSecretKey" -}}
{{- if .Values.postgresql.enabled -}}
postgres-password
{{- else if .Values.externalDatabase.existingSecret -}}
{{- .Values.externalDatabase.existingSecretPasswordKey -}}
{{- else -}}
DATABASE_PASSWORD
{{- end -}}
{{- end -}}

{{/* moorage.databaseUrl is DATABASE_URL with the password URL-encoded (for the Secret). */}}
{{- define "moorage.databaseUrl" -}}
{{- printf "postgresql://%s:%s@%s:%s/%s?sslmode=%s" (include "moorage.databaseUser" . | urlquery | replace "+" "%20") (include "moorage.databasePassword" . | urlquery | replace "+" "%20") (include "moorage.databaseHost" .) (include "moorage.databasePort" .) (include "moorage.databaseName" .) (include "moorage.databaseSslMode" .) -}}
{{- end -}}

{{/* moorage.redisUrl is REDIS_URL (for the Secret). */}}
{{- define "moorage.redisUrl" -}}
{{- $auth := "" -}}
{{- with .Values.redis.auth.password }}{{ $auth = printf ":%s@" (urlquery . | replace "+" "%20") }}{{ end -}}
{{- if .Values.redis.enabled -}}
{{- printf "redis://%s%s:6379/0" $auth (include "moorage.componentName" (dict "ctx" . "component" "redis")) -}}
{{- else -}}
{{- $host := required "externalRedis.host is required when redis.enabled is false" .Values.externalRedis.host -}}
{{- printf "%s://%s%s:%v/%v" (ternary "rediss" "redis" .Values.externalRedis.tls) $auth $host .Values.externalRedis.port .Values.externalRedis.database -}}
{{- end -}}
{{- end -}}

{{/*
moorage.appSecretKey is APP_SECRET_KEY: backend.secretKey, else the key already
stored in the release's Secret (so upgrades keep it), else a new random key.
*/}}
{{- define "moorage.appSecretKey" -}}
{{- if .Values.backend.secretKey -}}
{{- .Values.backend.secretKey -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "moorage.secretName" .) -}}
{{- if and $existing $existing.data (hasKey $existing.data "APP_SECRET_KEY") -}}
{{- index $existing.data "APP_SECRET_KEY" | b64dec -}}
{{- else -}}
{{- randAlphaNum 48 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
moorage.appEnv is the environment of every container running application code
(backend, worker, migrations). Secret-bearing variables come from Secrets.
*/}}
{{- define "moorage.appEnv" -}}
{{- if include "moorage.databasePasswordInValues" . }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "moorage.secretName" . }}
      key: DATABASE_URL
{{- else }}
# The password lives in an existing Secret: DATABASE_URL is assembled by the
# kubelet ($(VAR) expansion), so that password must be URL-safe.
- name: DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "moorage.databasePasswordSecretName" . }}
      key: {{ include "moorage.databasePasswordSecretKey" . }}
- name: DATABASE_URL
  value: {{ printf "postgresql://%s:$(DATABASE_PASSWORD)@%s:%s/%s?sslmode=%s" (include "moorage.databaseUser" . | urlquery | replace "+" "%20") (include "moorage.databaseHost" .) (include "moorage.databasePort" .) (include "moorage.databaseName" .) (include "moorage.databaseSslMode" .) | quote }}
{{- end }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "moorage.secretName" . }}
      key: REDIS_URL
- name: APP_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "moorage.secretName" . }}
      key: APP_SECRET_KEY
{{- end -}}

{{/* moorage.checksums are pod annotations that roll pods when config or secrets change. */}}
{{- define "moorage.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end -}}

{{/*
moorage.schemaGate is the init container that keeps backend and worker pods
from starting until the database schema is at (or beyond) the Alembic head of
their own image. See templates/migrations/job.yaml for the ordering design.
*/}}
{{- define "moorage.schemaGate" -}}
{{- if .ctx.Values.migrations.enabled }}
- name: wait-for-schema
  image: {{ include "moorage.appImage" (dict "ctx" .ctx "component" "backend") }}
  imagePullPolicy: {{ .ctx.Values.backend.image.pullPolicy }}
  command: ["python", "/scripts/wait_for_schema.py"]
  env:
    {{- include "moorage.appEnv" .ctx | trim | nindent 4 }}
    - name: WAIT_TIMEOUT_SECONDS
      value: {{ .ctx.Values.migrations.waitTimeoutSeconds | quote }}
  resources:
    {{- toYaml .ctx.Values.migrations.resources | nindent 4 }}
  securityContext:
    {{- include "moorage.containerSecurityContext" .ctx | nindent 4 }}
  volumeMounts:
    - name: scripts
      mountPath: /scripts
      readOnly: true
    - name: tmp
      mountPath: /tmp
{{- end }}
{{- end -}}

{{/*
moorage.validate fails the render with one clear message per guard rail the
schema cannot express well. Included from NOTES.txt and the ConfigMap.
*/}}
{{- define "moorage.validate" -}}
{{- if eq .Values.global.environment "prod" -}}
{{- if .Values.postgresql.enabled -}}
{{- fail "global.environment=prod requires postgresql.enabled=false and externalDatabase.host (production uses an external PostgreSQL)" -}}
{{- end -}}
{{- if not .Values.externalDatabase.host -}}
{{- fail "global.environment=prod requires a non-empty externalDatabase.host" -}}
{{- end -}}
{{- if not (and .Values.ingress.enabled .Values.ingress.tls) -}}
{{- fail "global.environment=prod requires ingress.enabled=true with a non-empty ingress.tls" -}}
{{- end -}}
{{- end -}}
{{- end -}}
