{{/*
Helpers of the moorage chart. Every helper is prefixed "moorage.".
Component-scoped helpers take a dict: (dict "ctx" $ "component" "backend").
*/}}

{{/* moorage.name is the app.kubernetes.io/name label: the chart name, or nameOverride. */}}
{{- define "moorage.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
moorage.fullname is the name prefix of every resource: fullnameOverride, else the
release name, followed by nameOverride when it is set and not already part of it.
Unlike `helm create`, the chart name is not appended: objects are "<release>-<component>".
At most 40 characters, leaving room for the component suffix.
*/}}
{{- define "moorage.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if and .Values.nameOverride (not (contains .Values.nameOverride .Release.Name)) -}}
{{- printf "%s-%s" .Release.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* moorage.componentName is "<fullname>-<component>" ("<release>-<component>" by default). */}}
{{- define "moorage.componentName" -}}
{{- printf "%s-%s" (include "moorage.fullname" .ctx) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* moorage.chart is the helm.sh/chart label value. */}}
{{- define "moorage.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* moorage.selectorLabels are the immutable labels a workload selects its pods by. */}}
{{- define "moorage.selectorLabels" -}}
app.kubernetes.io/name: {{ include "moorage.name" .ctx }}
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

{{/*
moorage.podLabels are the labels of a component's pod template: the component's
podLabels, then the recommended labels, which win (selectors keep matching).
*/}}
{{- define "moorage.podLabels" -}}
{{- $labels := include "moorage.labels" . | fromYaml -}}
{{- toYaml (merge $labels ((index .ctx.Values .component).podLabels | default dict)) -}}
{{- end -}}

{{/* moorage.instanceSelector selects every pod of the release. */}}
{{- define "moorage.instanceSelector" -}}
app.kubernetes.io/name: {{ include "moorage.name" . }}
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
moorage.imageReference is "[registry/]repository@digest" or "[registry/]repository:tag"
of .image: the digest wins over the tag. global.imageRegistry replaces the registry
a repository names (a first path part with "." or ":", or "localhost", as Docker
reads it), or is prepended to a repository that names none (Docker Hub).
*/}}
{{- define "moorage.imageReference" -}}
{{- $repository := .image.repository -}}
{{- with .ctx.Values.global.imageRegistry -}}
{{- $parts := splitList "/" $repository -}}
{{- $first := first $parts -}}
{{- if and (gt (len $parts) 1) (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) -}}
{{- $repository = rest $parts | join "/" -}}
{{- end -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" .) $repository -}}
{{- end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (toString .image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
moorage.appImage is the reference of an application image; without a digest the
tag is required (the deploy task writes it) and may never be "latest".
*/}}
{{- define "moorage.appImage" -}}
{{- $image := (index .ctx.Values .component).image -}}
{{- if not $image.digest -}}
{{- $tag := required (printf "%s.image.tag is required: pass the generated image values file (the deploy task writes it), e.g. --set %s.image.tag=<content hash>, or set %s.image.digest" .component .component .component) $image.tag | toString -}}
{{- if eq $tag "latest" -}}
{{- fail (printf "%s.image.tag must not be \"latest\": use an immutable tag or a digest" .component) -}}
{{- end -}}
{{- end -}}
{{- include "moorage.imageReference" (dict "ctx" .ctx "image" $image) -}}
{{- end -}}

{{/* moorage.image is the reference of a third-party image given as .image (values path .name). */}}
{{- define "moorage.image" -}}
{{- if not .image.digest -}}
{{- $tag := .image.tag | toString -}}
{{- if or (eq $tag "") (eq $tag "latest") -}}
{{- fail (printf "%s.image.tag must be a fixed version, not %q (or set %s.image.digest)" .name $tag .name) -}}
{{- end -}}
{{- end -}}
{{- include "moorage.imageReference" . -}}
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
{{- $antiAffinity := $values.podAntiAffinity | default "" -}}
{{- if $values.affinity -}}
{{- toYaml $values.affinity -}}
{{- else if eq $antiAffinity "hard" -}}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "moorage.selectorLabels" . | nindent 10 }}
{{- else if eq $antiAffinity "soft" -}}
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

{{/*
moorage.topologySpreadConstraints are the component's constraints; one without a
labelSelector gets the component's selector labels.
*/}}
{{- define "moorage.topologySpreadConstraints" -}}
{{- $ctx := . -}}
{{- $constraints := list -}}
{{- range (index .ctx.Values .component).topologySpreadConstraints -}}
{{- $constraint := deepCopy . -}}
{{- if not (hasKey $constraint "labelSelector") -}}
{{- $_ := set $constraint "labelSelector" (dict "matchLabels" (include "moorage.selectorLabels" $ctx | fromYaml)) -}}
{{- end -}}
{{- $constraints = append $constraints $constraint -}}
{{- end -}}
{{- with $constraints }}{{ toYaml . }}{{ end -}}
{{- end -}}

{{/*
moorage.scheduling renders priorityClassName, affinity, nodeSelector, tolerations and
topologySpreadConstraints of a component (each only when its values have it).
*/}}
{{- define "moorage.scheduling" -}}
{{- $values := index .ctx.Values .component -}}
{{- with $values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
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
{{- with include "moorage.topologySpreadConstraints" . }}
topologySpreadConstraints:
  {{- . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* moorage.probeTiming renders the timing fields of a probe from its values. */}}
{{- define "moorage.probeTiming" -}}
{{- with .initialDelaySeconds }}
initialDelaySeconds: {{ . }}
{{- end }}
periodSeconds: {{ .periodSeconds }}
timeoutSeconds: {{ .timeoutSeconds }}
failureThreshold: {{ .failureThreshold }}
{{- end -}}

{{/* moorage.extraEnv renders a component's extraEnv entries (list items, no key). */}}
{{- define "moorage.extraEnv" -}}
{{- with (index .ctx.Values .component).extraEnv }}{{ toYaml . }}{{ end -}}
{{- end -}}

{{/* moorage.extraVolumeMounts renders a component's extraVolumeMounts entries. */}}
{{- define "moorage.extraVolumeMounts" -}}
{{- with (index .ctx.Values .component).extraVolumeMounts }}{{ toYaml . }}{{ end -}}
{{- end -}}

{{/* moorage.extraVolumes renders a component's extraVolumes entries. */}}
{{- define "moorage.extraVolumes" -}}
{{- with (index .ctx.Values .component).extraVolumes }}{{ toYaml . }}{{ end -}}
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
moorage.appSecretKey is APP_SECRET_KEY for the chart's Secret (unused with
backend.existingSecret): backend.secretKey, else with backend.devSecretKey a key
derived from the release namespace and name. It never depends on the cluster or
on chance, so `helm template`, --dry-run, Argo CD and Flux render the same key
every time and checksum/secret only changes when the key does.
*/}}
{{- define "moorage.appSecretKey" -}}
{{- if .Values.backend.secretKey -}}
{{- .Values.backend.secretKey -}}
{{- else if .Values.backend.devSecretKey -}}
{{- printf "moorage-dev-secret-key:%s:%s" .Release.Namespace .Release.Name | sha256sum -}}
{{- else -}}
{{- fail "backend.secretKey is required: set APP_SECRET_KEY in the secrets values file (--set backend.secretKey=...), or backend.existingSecret to a Secret holding it; dev may set backend.devSecretKey=true instead" -}}
{{- end -}}
{{- end -}}

{{/* moorage.appSecretKeySecretName is the Secret APP_SECRET_KEY is read from. */}}
{{- define "moorage.appSecretKeySecretName" -}}
{{- default (include "moorage.secretName" .) .Values.backend.existingSecret -}}
{{- end -}}

{{/* moorage.appSecretKeySecretKey is the key of APP_SECRET_KEY in that Secret. */}}
{{- define "moorage.appSecretKeySecretKey" -}}
{{- if .Values.backend.existingSecret -}}
{{- .Values.backend.existingSecretKey -}}
{{- else -}}
APP_SECRET_KEY
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
      name: {{ include "moorage.appSecretKeySecretName" . }}
      key: {{ include "moorage.appSecretKeySecretKey" . }}
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
It shares the pod component's extraEnv and extraVolumeMounts (e.g. a CA bundle
for sslMode verify-full). Takes (dict "ctx" $ "component" "backend").
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
    {{- with include "moorage.extraEnv" . }}{{ . | nindent 4 }}{{ end }}
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
    {{- with include "moorage.extraVolumeMounts" . }}{{ . | nindent 4 }}{{ end }}
{{- end }}
{{- end -}}

{{/*
moorage.validate fails the render with one clear message per guard rail the
schema cannot express well. Included from NOTES.txt and the ConfigMap. The
production rules follow global.production, never the environment's name; the
messages name both the environment and that switch.
*/}}
{{- define "moorage.validate" -}}
{{- if .Values.global.production -}}
{{- $env := printf "global.environment=%s" .Values.global.environment -}}
{{- if .Values.postgresql.enabled -}}
{{- fail (printf "%s requires postgresql.enabled=false and externalDatabase.host (global.production is true: production uses an external PostgreSQL)" $env) -}}
{{- end -}}
{{- if not .Values.externalDatabase.host -}}
{{- fail (printf "%s requires a non-empty externalDatabase.host (global.production is true)" $env) -}}
{{- end -}}
{{- if not (and .Values.ingress.enabled .Values.ingress.tls) -}}
{{- fail (printf "%s requires ingress.enabled=true with a non-empty ingress.tls (global.production is true)" $env) -}}
{{- end -}}
{{- if .Values.backend.devSecretKey -}}
{{- fail (printf "%s requires backend.devSecretKey=false (global.production is true): set backend.secretKey or backend.existingSecret" $env) -}}
{{- end -}}
{{- end -}}
{{- end -}}
