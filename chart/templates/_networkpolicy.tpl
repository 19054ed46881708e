{{/* moorage.podPeer is a NetworkPolicy peer selecting one component's pods. */}}
{{- define "moorage.podPeer" -}}
- podSelector:
    matchLabels:
      {{- include "moorage.selectorLabels" . | nindent 6 }}
{{- end -}}

{{/* moorage.databaseEgress allows egress to the database (in-chart pods or the external range). */}}
{{- define "moorage.databaseEgress" -}}
{{- if .Values.postgresql.enabled -}}
- to:
    {{- include "moorage.podPeer" (dict "ctx" . "component" "postgresql") | nindent 4 }}
  ports:
    - port: 5432
      protocol: TCP
{{- else -}}
- to:
    - ipBlock:
        cidr: {{ .Values.externalDatabase.cidr }}
  ports:
    - port: {{ .Values.externalDatabase.port }}
      protocol: TCP
{{- end -}}
{{- end -}}

{{/* moorage.redisEgress allows egress to Redis (in-chart pods or the external range). */}}
{{- define "moorage.redisEgress" -}}
{{- if .Values.redis.enabled -}}
- to:
    {{- include "moorage.podPeer" (dict "ctx" . "component" "redis") | nindent 4 }}
  ports:
    - port: 6379
      protocol: TCP
{{- else -}}
- to:
    - ipBlock:
        cidr: {{ .Values.externalRedis.cidr }}
  ports:
    - port: {{ .Values.externalRedis.port }}
      protocol: TCP
{{- end -}}
{{- end -}}

{{/* moorage.networkPolicyMeta is the metadata and pod selector of a component's policy. */}}
{{- define "moorage.networkPolicyMeta" -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "moorage.componentName" . }}
  labels:
    {{- include "moorage.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "moorage.selectorLabels" . | nindent 6 }}
{{- end -}}
