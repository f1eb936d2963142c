{{/*
The operator's permissions, each rule for calls the operator makes (operator/poet_operator/k8s/). kopf runs
with namespace and CRD scanning off and event posting off, so it needs nothing beyond these.
tests/chart/test_rbac.py checks them against tests/k8s/operator_api_calls.json (the calls recorded in the
operator's integration tests): every call allowed, nothing granted that is not called or named there.
*/}}

{{/* Rules in every namespace where ModelMonitors live. */}}
{{- define "poet-monitor.namespacedRules" -}}
# ModelMonitors: kopf lists and watches them and patches its finalizer and progress annotations; the
# operator reads one before acting and clears the manual-control annotations it has handled.
- apiGroups: ["poet.dev"]
  resources: ["modelmonitors"]
  verbs: ["get", "list", "watch", "patch"]
# Status: phase, versions, rollout and conditions (merge patches).
- apiGroups: ["poet.dev"]
  resources: ["modelmonitors/status"]
  verbs: ["patch"]
# Version ConfigMaps (NAME-vN, immutable; old ones pruned), the reference ConfigMap (NAME-reference) and the
# history kept at each promotion (NAME-history).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "create", "patch", "delete"]
# The stable and canary Deployments of each monitor.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "create", "patch", "delete"]
# The ingestion Service of each monitor.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "create", "patch"]
# Runtime pods: restarts, exit codes and termination messages are the crash feedback.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# The last lines of a crashed runtime's log go into the feedback record.
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# Reports and histories are read (GET), references and histories handed over (POST) through the API
# server's pod proxy.
- apiGroups: [""]
  resources: ["pods/proxy"]
  verbs: ["get", "create"]
# Events on ModelMonitors (generation, enforce, rollout).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if .Values.llm.allowMonitorSecrets }}
# Opted in (llm.allowMonitorSecrets): read the Secret a monitor names in spec.generator.llm.apiKeySecret.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}
{{- end }}

{{/* Rules of the operator's own namespace when it is not watched: the lessons ConfigMap. */}}
{{- define "poet-monitor.selfRules" -}}
# The lessons ConfigMap (poet-monitor-lessons): what every regeneration learned, shared across monitors.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "create", "patch"]
{{- end }}
