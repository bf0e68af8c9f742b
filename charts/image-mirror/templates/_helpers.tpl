{{/* The chart's name, and the full name of its objects. */}}
{{- define "image-mirror.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "image-mirror.fullname" -}}
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

{{/* Labels of every object; the component is given as "component". */}}
{{- define "image-mirror.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{ include "image-mirror.selector" . }}
{{- end }}

{{- define "image-mirror.selector" -}}
app.kubernetes.io/name: {{ include "image-mirror.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{- define "image-mirror.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "image-mirror.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "image-mirror.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "image-mirror.listsConfigMap" -}}
{{- default (printf "%s-lists" (include "image-mirror.fullname" .)) .Values.lists.existingConfigMap }}
{{- end }}

{{/* The environment every role shares: the broker, registries' credentials, logs, traces. */}}
{{- define "image-mirror.env" -}}
- name: AMQP_URL
  valueFrom:
    secretKeyRef:
      name: {{ .root.Values.secrets.amqp.name }}
      key: {{ .root.Values.secrets.amqp.key }}
- name: IMAGE_MIRROR_QUEUE_PREFIX
  value: {{ .root.Values.queuePrefix | quote }}
- name: IMAGE_MIRROR_LOG_FORMAT
  value: {{ .root.Values.logFormat | quote }}
- name: IMAGE_MIRROR_CACHE_DIR
  value: /cache
{{- if .root.Values.secrets.dockerConfig.name }}
- name: DOCKER_CONFIG
  value: /etc/image-mirror/docker
{{- end }}
{{- if and .github .root.Values.secrets.github.name }}
- name: GITHUB_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .root.Values.secrets.github.name }}
      key: {{ .root.Values.secrets.github.key }}
{{- end }}
{{- if .root.Values.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .root.Values.otlpEndpoint | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ printf "image-mirror-%s" .component | quote }}
{{- end }}
{{- with .root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The volumes every role mounts: a writable cache and /tmp, the Docker config. */}}
{{- define "image-mirror.volumeMounts" -}}
- name: cache
  mountPath: /cache
- name: tmp
  mountPath: /tmp
{{- if .Values.secrets.dockerConfig.name }}
- name: docker-config
  mountPath: /etc/image-mirror/docker
  readOnly: true
{{- end }}
{{- end }}

{{- define "image-mirror.volumes" -}}
- name: cache
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- if .Values.secrets.dockerConfig.name }}
- name: docker-config
  secret:
    secretName: {{ .Values.secrets.dockerConfig.name }}
    items:
      - key: {{ .Values.secrets.dockerConfig.key }}
        path: config.json
{{- end }}
{{- end }}

{{/* What every pod shares: service account, security, scheduling. */}}
{{- define "image-mirror.podSpec" -}}
serviceAccountName: {{ include "image-mirror.serviceAccountName" . }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Whole seconds of a duration (60s, 10m, 1h). */}}
{{- define "image-mirror.seconds" -}}
{{- $d := . | toString }}
{{- if hasSuffix "ms" $d }}{{ div (trimSuffix "ms" $d | int) 1000 }}
{{- else if hasSuffix "s" $d }}{{ trimSuffix "s" $d | int }}
{{- else if hasSuffix "m" $d }}{{ mul (trimSuffix "m" $d | int) 60 }}
{{- else if hasSuffix "h" $d }}{{ mul (trimSuffix "h" $d | int) 3600 }}
{{- else if hasSuffix "d" $d }}{{ mul (trimSuffix "d" $d | int) 86400 }}
{{- else }}{{ fail (printf "not a duration: %s" $d) }}
{{- end }}
{{- end }}
