{{/*
moorage.horizontalPodAutoscaler renders a component's HPA when autoscaling is enabled.
*/}}
{{- define "moorage.horizontalPodAutoscaler" -}}
{{- $c := index .ctx.Values .component -}}
{{- if $c.autoscaling.enabled -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "moorage.componentName" . }}
  labels:
    {{- include "moorage.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "moorage.componentName" . }}
  minReplicas: {{ $c.autoscaling.minReplicas }}
  maxReplicas: {{ $c.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $c.autoscaling.targetCPUUtilizationPercentage }}
{{- end -}}
{{- end -}}

{{/*
moorage.podDisruptionBudget renders a component's PDB when it is enabled and
more than one replica can run (a PDB over a single pod blocks node drains).
*/}}
{{- define "moorage.podDisruptionBudget" -}}
{{- $c := index .ctx.Values .component -}}
{{- $replicas := ternary $c.autoscaling.minReplicas $c.replicaCount $c.autoscaling.enabled | int -}}
{{- if and $c.podDisruptionBudget.enabled (gt $replicas 1) -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "moorage.componentName" . }}
  labels:
    {{- include "moorage.labels" . | nindent 4 }}
spec:
  minAvailable: {{ $c.podDisruptionBudget.minAvailable }}
  selector:
    matchLabels:
      {{- include "moorage.selectorLabels" . | nindent 6 }}
{{- end -}}
{{- end -}}
