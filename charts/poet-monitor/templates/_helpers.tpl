{{/* Names and labels shared by every template of the chart. */}}

{{/* The chart name, or nameOverride. */}}
{{- define "poet-monitor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: fullnameOverride, or RELEASE-NAME unless the release name holds the chart name. */}}
{{- define "poet-monitor.fullname" -}}
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

{{/* chart-version for the helm.sh/chart label. */}}
{{- define "poet-monitor.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object of the release. */}}
{{- define "poet-monitor.labels" -}}
helm.sh/chart: {{ include "poet-monitor.chart" . }}
{{ include "poet-monitor.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the operator pod (stable across upgrades: selectors are immutable). */}}
{{- define "poet-monitor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "poet-monitor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "poet-monitor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "poet-monitor.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image:tag of the operator; the tag defaults to the appVersion. */}}
{{- define "poet-monitor.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* image:tag of the monitor runtime; the tag defaults to the appVersion. */}}
{{- define "poet-monitor.runtimeImage" -}}
{{- printf "%s:%s" .Values.runtimeImage.repository (default .Chart.AppVersion .Values.runtimeImage.tag) }}
{{- end }}

{{/* Namespaces where monitors run, for NetworkPolicies: the explicit list, the watched ones, or the release's. */}}
{{- define "poet-monitor.monitorNamespaces" -}}
{{- $ns := .Values.networkPolicy.namespaces | default .Values.watch.namespaces | default (list .Release.Namespace) }}
{{- toJson $ns }}
{{- end }}

{{/* The labels every monitor runtime pod carries (set by the operator). */}}
{{- define "poet-monitor.runtimePodLabels" -}}
app.kubernetes.io/name: poet-monitor-runtime
app.kubernetes.io/managed-by: poet-monitor
{{- end }}
