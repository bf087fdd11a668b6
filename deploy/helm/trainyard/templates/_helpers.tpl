{{/* Names, labels and the Redis connection, shared by every template. */}}

{{- define "trainyard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "trainyard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "trainyard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "trainyard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "trainyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "trainyard.labels" -}}
helm.sh/chart: {{ include "trainyard.chart" . }}
{{ include "trainyard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "trainyard.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "trainyard.redisName" -}}
{{- printf "%s-redis" (include "trainyard.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "trainyard.secretName" -}}
{{- if .Values.redis.existingSecret -}}
{{- .Values.redis.existingSecret -}}
{{- else -}}
{{- printf "%s-redis" (include "trainyard.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "trainyard.secretKey" -}}
{{- if .Values.redis.existingSecret -}}
{{- .Values.redis.existingSecretKey -}}
{{- else -}}
redis-password
{{- end -}}
{{- end -}}

{{/*
TRAINYARD_REDIS_URL with the password left as $(TRAINYARD_REDIS_PASSWORD): Kubernetes fills it in
from the env var of that name, which comes from the Secret (see trainyard.redisEnv).
*/}}
{{- define "trainyard.redisUrl" -}}
{{- if .Values.redis.bundled.enabled -}}
redis://:$(TRAINYARD_REDIS_PASSWORD)@{{ include "trainyard.redisName" . }}:6379/0
{{- else -}}
{{- $url := required "redis.url is required when redis.bundled.enabled=false" .Values.redis.url -}}
{{- $parts := splitList "://" $url -}}
{{- if ne (len $parts) 2 -}}
{{- fail (printf "redis.url %q: expected redis://host:port/db, rediss://host:port/db or redis+sentinel://host:port,.../service/db" $url) -}}
{{- end -}}
{{- if contains "@" (last $parts) -}}
{{- fail "redis.url must not hold credentials: the password comes from the Secret (redis.password or redis.existingSecret)" -}}
{{- end -}}
{{ first $parts }}://{{ .Values.redis.username }}:$(TRAINYARD_REDIS_PASSWORD)@{{ last $parts }}
{{- end -}}
{{- end -}}

{{/* The env entries that give a container TRAINYARD_REDIS_URL; the password var must come first. */}}
{{- define "trainyard.redisEnv" -}}
- name: TRAINYARD_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "trainyard.secretName" . }}
      key: {{ include "trainyard.secretKey" . }}
- name: TRAINYARD_REDIS_URL
  value: {{ include "trainyard.redisUrl" . | quote }}
{{- if .Values.redis.waitReplicas }}
- name: TRAINYARD_REDIS_REPLICAS
  value: {{ .Values.redis.waitReplicas | quote }}
{{- end }}
{{- end -}}

{{/*
The worker container's command: tini, then a shell that drops TRAINYARD_REDIS_PASSWORD before it
starts trainyard with the container's args. Tasks inherit the worker's environment and trainyard
withholds TRAINYARD_REDIS_URL from them, so the bare password must not be there either.
*/}}
{{- define "trainyard.workerCommand" -}}
- tini
- --
- sh
- -c
- unset TRAINYARD_REDIS_PASSWORD && exec trainyard "$@"
- trainyard
{{- end -}}
