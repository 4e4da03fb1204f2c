{{/* Names, labels and images every template shares. */}}

{{- define "modelfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modelfleet.fullname" -}}
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

{{- define "modelfleet.operatorName" -}}
{{- printf "%s-operator" (include "modelfleet.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modelfleet.operatorServiceAccount" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "modelfleet.operatorName" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The gateway's objects: "<fullname>-gateway-<instance>"; call with (dict "root" $ "gw" $gw). */}}
{{- define "modelfleet.gatewayName" -}}
{{- printf "%s-gateway-%s" (include "modelfleet.fullname" .root) .gw.name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modelfleet.gatewayNamespace" -}}
{{- default .root.Release.Namespace .gw.namespace }}
{{- end }}

{{- define "modelfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "modelfleet.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "modelfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelfleet
{{- end }}

{{- define "modelfleet.operatorSelector" -}}
{{ include "modelfleet.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Call with (dict "root" $ "gw" $gw). */}}
{{- define "modelfleet.gatewaySelector" -}}
{{ include "modelfleet.selectorLabels" .root }}
app.kubernetes.io/component: gateway
modelfleet.io/gateway: {{ .gw.name }}
{{- end }}

{{/* repository[:tag][@digest]; call with (dict "image" .Values.image "default" .Chart.AppVersion). */}}
{{- define "modelfleet.image" -}}
{{- $tag := default .default .image.tag }}
{{- if .image.digest }}
{{- printf "%s:%s@%s" .image.repository $tag .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/* What every container of the chart runs with: no root, nothing writable but volumes. */}}
{{- define "modelfleet.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}
