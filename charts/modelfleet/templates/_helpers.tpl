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

{{/* repository[:tag][@digest]; call with (dict "image" .Values.image "default" .Chart.AppVersion). */}}
{{- define "modelfleet.image" -}}
{{- $tag := default .default .image.tag }}
{{- if .image.digest }}
{{- printf "%s:%s@%s" .image.repository $tag .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/*
The operator's default Prometheus: flags, and the Secrets they read mounted as files.
Directories, not subPath mounts: a mounted Secret is updated in place when it rotates.
*/}}
{{- define "modelfleet.prometheusDir" -}}/etc/modelfleet/prometheus{{- end }}

{{- define "modelfleet.prometheusArgs" -}}
{{- $p := .Values.operator.prometheus }}
{{- $dir := include "modelfleet.prometheusDir" . }}
{{- with $p.tls.caSecret }}
- --prometheus-ca-file={{ $dir }}/ca/{{ .key }}
{{- end }}
{{- if $p.tls.insecureSkipVerify }}
- --prometheus-insecure-skip-verify
{{- end }}
{{- if $p.auth.serviceAccountToken }}
- --prometheus-token-file=/var/run/secrets/kubernetes.io/serviceaccount/token
{{- else if $p.auth.bearerTokenSecret }}
- --prometheus-token-file={{ $dir }}/token/{{ $p.auth.bearerTokenSecret.key }}
{{- end }}
{{- if $p.auth.basicAuthSecret }}
- --prometheus-basic-auth-dir={{ $dir }}/basic-auth
{{- end }}
{{- if $p.auth.headersSecret }}
- --prometheus-headers-dir={{ $dir }}/headers
{{- end }}
- --prometheus-timeout={{ $p.timeoutSeconds }}
{{- end }}

{{- define "modelfleet.prometheusSecrets" -}}
{{- $p := .Values.operator.prometheus }}
{{- $secrets := list }}
{{- with $p.tls.caSecret }}{{ $secrets = append $secrets (dict "volume" "prometheus-ca" "dir" "ca" "name" .name) }}{{ end }}
{{- if and $p.auth.bearerTokenSecret (not $p.auth.serviceAccountToken) }}{{ $secrets = append $secrets (dict "volume" "prometheus-token" "dir" "token" "name" $p.auth.bearerTokenSecret.name) }}{{ end }}
{{- with $p.auth.basicAuthSecret }}{{ $secrets = append $secrets (dict "volume" "prometheus-basic-auth" "dir" "basic-auth" "name" .) }}{{ end }}
{{- with $p.auth.headersSecret }}{{ $secrets = append $secrets (dict "volume" "prometheus-headers" "dir" "headers" "name" .) }}{{ end }}
{{- toJson $secrets }}
{{- end }}

{{- define "modelfleet.prometheusVolumes" -}}
{{- range include "modelfleet.prometheusSecrets" . | fromJsonArray }}
- name: {{ .volume }}
  secret:
    secretName: {{ .name }}
{{- end }}
{{- end }}

{{- define "modelfleet.prometheusVolumeMounts" -}}
{{- $dir := include "modelfleet.prometheusDir" . }}
{{- range include "modelfleet.prometheusSecrets" . | fromJsonArray }}
- name: {{ .volume }}
  mountPath: {{ $dir }}/{{ .dir }}
  readOnly: true
{{- end }}
{{- end }}
