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
        cidr: {{ required "externalDatabase.cidr is required with networkPolicy.enabled=true and postgresql.enabled=false: set the address range of the external database (e.g. 10.0.12.0/24) that the NetworkPolicies allow egress to" .Values.externalDatabase.cidr }}
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
        cidr: {{ required "externalRedis.cidr is required with networkPolicy.enabled=true and redis.enabled=false: set the address range of the external Redis (e.g. 10.0.13.0/24) that the NetworkPolicies allow egress to" .Values.externalRedis.cidr }}
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
