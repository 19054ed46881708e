{{/*
Live update (dev only): `inv dev.watch` copies changed code into running
containers. Each of a component's liveUpdate.paths gets a writable copy of the
image's files there (an emptyDir seeded by an init container and mounted over
the path), so the root filesystem stays read-only. Refused in production.
Each helper takes (dict "ctx" $ "component" "backend").
*/}}

{{/* moorage.liveUpdateSeed is the init container that copies the image's files into the volume. */}}
{{- define "moorage.liveUpdateSeed" -}}
{{- $c := index .ctx.Values .component -}}
{{- if $c.liveUpdate.enabled }}
{{- if .ctx.Values.global.production }}
{{- fail (printf "%s.liveUpdate.enabled is for dev only and global.production is true (global.environment=%s): turn it off" .component .ctx.Values.global.environment) }}
{{- end }}
- name: seed-live-update
  image: {{ include "moorage.appImage" (dict "ctx" .ctx "component" .component) }}
  imagePullPolicy: {{ $c.image.pullPolicy }}
  command:
    - sh
    - -c
    - |
      set -e
      {{- range $i, $path := $c.liveUpdate.paths }}
      mkdir -p /live-update/p{{ $i }} && cp -a {{ $path | quote }}/. /live-update/p{{ $i }}/
      {{- end }}
  resources:
    {{- toYaml $c.liveUpdate.resources | nindent 4 }}
  securityContext:
    {{- include "moorage.containerSecurityContext" .ctx | nindent 4 }}
  volumeMounts:
    - name: live-update
      mountPath: /live-update
{{- end }}
{{- end -}}

{{/* moorage.liveUpdateMounts mounts the seeded copies over the paths (list items, no key). */}}
{{- define "moorage.liveUpdateMounts" -}}
{{- $c := index .ctx.Values .component -}}
{{- if $c.liveUpdate.enabled }}
{{- range $i, $path := $c.liveUpdate.paths }}
- name: live-update
  mountPath: {{ $path }}
  subPath: p{{ $i }}
{{- end }}
{{- end }}
{{- end -}}

{{/* moorage.liveUpdateVolume is the pod volume behind them (a list item, no key). */}}
{{- define "moorage.liveUpdateVolume" -}}
{{- $c := index .ctx.Values .component -}}
{{- if $c.liveUpdate.enabled }}
- name: live-update
  emptyDir:
    sizeLimit: {{ $c.liveUpdate.sizeLimit }}
{{- end }}
{{- end -}}

{{/* moorage.liveUpdateCommand replaces the container's command while live update is on (with its key). */}}
{{- define "moorage.liveUpdateCommand" -}}
{{- $c := index .ctx.Values .component -}}
{{- if and $c.liveUpdate.enabled $c.liveUpdate.command }}
command:
  {{- toYaml $c.liveUpdate.command | nindent 2 }}
{{- end }}
{{- end -}}
