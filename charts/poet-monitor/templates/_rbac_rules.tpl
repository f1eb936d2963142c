{{/*
The operator's permissions, each rule for a call the operator makes. tests/chart/test_rbac.py checks them
against tests/k8s/operator_api_calls.json (the calls the operator's integration tests recorded): every call
allowed, nothing granted that is not called.
*/}}

{{/* Rules in every namespace where ModelMonitors live. */}}
{{- define "poet-monitor.namespacedRules" -}}
# ModelMonitors: kopf watches them and patches finalizers and its progress annotations.
- apiGroups: ["poet.dev"]
  resources: ["modelmonitors"]
  verbs: ["get", "list", "watch", "patch"]
# Status: phase, versions, rollout and conditions.
- apiGroups: ["poet.dev"]
  resources: ["modelmonitors/status"]
  verbs: ["get", "patch"]
# Version ConfigMaps (NAME-vN, immutable; old ones pruned) and the reference ConfigMap (NAME-reference).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The stable and canary Deployments of each monitor.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The ingestion Service of each monitor.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Runtime pods: restarts, exit codes and termination messages are the crash feedback.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# The last lines of a crashed runtime's log go into the feedback record.
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# Reports are read (GET) and references handed over (POST) through the API server's pod proxy.
- apiGroups: [""]
  resources: ["pods/proxy"]
  verbs: ["get", "create"]
# Events on ModelMonitors (generation, enforce, rollout), from kopf and from the operator.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Rules on cluster-scoped resources. */}}
{{- define "poet-monitor.clusterRules" -}}
# kopf scans the cluster's CRDs to resolve the resources it serves.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- if not .Values.watch.namespaces }}
# A cluster-wide kopf lists and watches namespaces to follow the ones that come and go.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end }}
