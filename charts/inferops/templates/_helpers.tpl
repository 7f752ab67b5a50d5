{{/* Names */}}
{{- define "inferops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "inferops.fullname" -}}
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

{{- define "inferops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels: the CRD templates add these to the labels they carry already. */}}
{{- define "inferops.labels" -}}
helm.sh/chart: {{ include "inferops.chart" . }}
{{ include "inferops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "inferops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "inferops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "inferops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "inferops.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "inferops.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The catalog as the operator reads it: the data-plane image defaults to the operator's. */}}
{{- define "inferops.catalog" -}}
{{- $catalog := deepCopy .Values.catalog }}
{{- $images := default dict $catalog.images }}
{{- if not $images.inferops }}
{{- $_ := set $images "inferops" (include "inferops.image" .) }}
{{- end }}
{{- $_ := set $catalog "images" $images }}
{{- toYaml $catalog }}
{{- end }}

{{- define "inferops.peeringName" -}}
{{- default (include "inferops.fullname" .) .Values.peering.name }}
{{- end }}

{{- define "inferops.webhookServiceName" -}}
{{- printf "%s-webhook" (include "inferops.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "inferops.webhookSecretName" -}}
{{- printf "%s-webhook-tls" (include "inferops.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "inferops.webhookHost" -}}
{{- printf "%s.%s.svc" (include "inferops.webhookServiceName" .) .Release.Namespace }}
{{- end }}

{{/*
"true" when the webhook verifies its callers' client certificates (webhook.clientAuth):
on as soon as a CA is given. Fails on values that cannot work.
*/}}
{{- define "inferops.webhookClientAuth" -}}
{{- $auth := .Values.webhook.clientAuth }}
{{- if and $auth.caBundle $auth.caSecret }}
{{- fail "webhook.clientAuth: give caBundle or caSecret, not both" }}
{{- end }}
{{- if and $auth.allowedNames (not (or $auth.caBundle $auth.caSecret)) }}
{{- fail "webhook.clientAuth.allowedNames needs caBundle or caSecret" }}
{{- end }}
{{- if and .Values.webhook.enabled (or $auth.caBundle $auth.caSecret) }}true{{ end }}
{{- end }}

{{- define "inferops.webhookClientCAName" -}}
{{- printf "%s-webhook-client-ca" (include "inferops.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
RBAC rules the operator needs in every namespace it watches (ClusterRole when it watches
all of them, a Role in each otherwise). Derived from operator/inferops/reconcile and
handlers; tests/cluster/test_chart.py runs the operator with exactly these permissions.
*/}}
{{- define "inferops.namespacedRules" -}}
# The three kinds: Kopf lists and watches them into the operator's caches, which the
# reconcilers read. Passes are level-based, so nothing but their status is ever written.
- apiGroups: [serving.inferops.dev]
  resources: [aiapplications, realtimeservices, batchservices]
  verbs: [get, list, watch]
# Phase, conditions and observedGeneration (merge patches of the status subresource).
- apiGroups: [serving.inferops.dev]
  resources: [aiapplications/status, realtimeservices/status, batchservices/status]
  verbs: [patch]
# Kopf posts core v1 Events for phase changes, pruning and handler errors.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# Children of a RealTimeService: server-side apply (patch; create when new), pruning
# (delete). Every child kind is listed and watched, with a label selector, for the
# operator's caches.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services, configmaps]
  verbs: [get, list, watch, create, patch, delete]
# Pods are watched for readiness, crash loops and batch workers' termination messages.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
# A BatchService's Indexed Job: applied once, suspended/resumed with a patch, watched.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch, delete]
# The weighted HTTPRoute in gateway-api router mode (listed for pruning in every mode).
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, list, watch, create, patch, delete]
# The NetworkPolicies beside every service's pods (catalog networkPolicies; listed for
# pruning when they are turned off).
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch, create, patch, delete]
{{- if .Values.rbac.readSecretLabels }}
# Whether a Secret a service names is labelled serving.inferops.dev/usable: the operator
# asks for its metadata only (PartialObjectMetadata), one name at a time, never a list.
# Off: only the Namespace annotation serving.inferops.dev/usable-secrets makes a Secret
# usable.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- end }}
{{- if and .Values.peering.enabled .Values.watchNamespaces }}
# Kopf peering (HA) in namespaced mode.
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end }}
