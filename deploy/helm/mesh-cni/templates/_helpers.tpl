{{/*
Object names are fixed, not derived from the release name: the plug-in skips
the installer's own pods by name prefix (INSTALLER_POD_PREFIX), the
ValidatingAdmissionPolicies match the agent's service account by name, and
the kustomize base (deploy/) uses the same names. One release per cluster.
*/}}
{{- define "mesh-cni.dsName" -}}mesh-cni-node{{- end }}

{{/*
Labels on every object: the kustomize base's (app.kubernetes.io/part-of)
plus Helm's own. test/helm ignores exactly the Helm ones when it compares
the chart with deploy/.
*/}}
{{- define "mesh-cni.labels" -}}
app.kubernetes.io/part-of: mesh-cni
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/* The agent's service-account user name, as the API server sees it. */}}
{{- define "mesh-cni.agentUser" -}}
system:serviceaccount:{{ .Release.Namespace }}:mesh-cni
{{- end }}

{{- define "mesh-cni.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end }}

{{/* The default socket dir: the ConfigMap then leaves AGENT_SOCKET empty. */}}
{{- define "mesh-cni.defaultSocketDir" -}}/var/run/mesh-cni{{- end }}
