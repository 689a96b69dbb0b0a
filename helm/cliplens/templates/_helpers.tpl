{{- define "cliplens.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cliplens.fullname" -}}
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

{{- define "cliplens.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cliplens.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cliplens.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{ include "cliplens.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "cliplens.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default (printf "%s%s" .Chart.AppVersion .Values.image.flavor)) }}
{{- end }}

{{/* In-chart MinIO / Redis: deployed when enabled and no external endpoint is given. */}}
{{- define "cliplens.minio.enabled" -}}
{{- if and .Values.minio.enabled (not .Values.s3.endpoint) }}true{{ end }}
{{- end }}

{{- define "cliplens.redis.enabled" -}}
{{- if and .Values.redisServer.enabled (not .Values.redis.host) }}true{{ end }}
{{- end }}

{{- define "cliplens.s3.endpoint" -}}
{{- if .Values.s3.endpoint }}{{ .Values.s3.endpoint }}
{{- else if include "cliplens.minio.enabled" . }}{{ printf "%s-minio:9000" (include "cliplens.fullname" .) }}
{{- else }}{{ fail "set s3.endpoint, or minio.enabled=true for the in-chart MinIO" }}
{{- end }}
{{- end }}

{{- define "cliplens.s3.secretName" -}}
{{- .Values.s3.existingSecret | default (printf "%s-s3" (include "cliplens.fullname" .)) }}
{{- end }}

{{- define "cliplens.redis.secretName" -}}
{{- .Values.redis.existingSecret | default (printf "%s-redis-auth" (include "cliplens.fullname" .)) }}
{{- end }}

{{- define "cliplens.redis.hasPassword" -}}
{{- if or .Values.redis.password .Values.redis.existingSecret }}true{{ end }}
{{- end }}

{{- define "cliplens.apiTokens.secretName" -}}
{{- .Values.apiTokens.existingSecret | default (printf "%s-api-tokens" (include "cliplens.fullname" .)) }}
{{- end }}

{{/* CLIPLENS_REDIS_URL; the password stays in its Secret and enters through $(CLIPLENS_REDIS_PASSWORD). */}}
{{- define "cliplens.redis.url" -}}
{{- $host := .Values.redis.host }}
{{- if not $host }}
{{- if include "cliplens.redis.enabled" . }}{{ $host = printf "%s-redis" (include "cliplens.fullname" .) }}
{{- else }}{{ fail "set redis.host, or redisServer.enabled=true for the in-chart Redis" }}
{{- end }}
{{- end }}
{{- printf "%s://%s%s:%v/%v" (ternary "rediss" "redis" .Values.redis.tls) (ternary ":$(CLIPLENS_REDIS_PASSWORD)@" "" (eq (include "cliplens.redis.hasPassword" .) "true")) $host .Values.redis.port .Values.redis.db }}
{{- end }}

{{/*
The Serve config: files/serve_config.yaml with serve.args and serve.deployments applied (one level,
as Serve replaces fields), and args.redis_url dropped when it is not the URL this chart builds.
*/}}
{{- define "cliplens.serveConfig" -}}
{{- $config := .Files.Get "files/serve_config.yaml" | fromYaml }}
{{- if not $config.applications }}{{ fail "files/serve_config.yaml is missing or has no applications" }}{{ end }}
{{- $app := first $config.applications }}
{{- $args := $app.args | default dict }}
{{- range $key, $value := .Values.serve.args }}
{{- $_ := set $args $key $value }}
{{- end }}
{{- if and (hasKey $args "redis_url") (not (hasKey .Values.serve.args "redis_url")) (ne $args.redis_url (include "cliplens.redis.url" .)) }}
{{- $_ := unset $args "redis_url" }}
{{- end }}
{{- with .Values.directPortsTls.secretName }}
{{- range $name := list "feature_port" "attribution_port" }}
{{- $port := get $args $name | default dict }}
{{- if ($port.port | default 0 | int) }}
{{- $_ := set $port "tls_cert_file" (printf "%s/tls.crt" $.Values.directPortsTls.mountPath) }}
{{- $_ := set $port "tls_key_file" (printf "%s/tls.key" $.Values.directPortsTls.mountPath) }}
{{- $_ := set $args $name $port }}
{{- end }}
{{- end }}
{{- end }}
{{- $_ := set $app "args" $args }}
{{- $known := list }}
{{- range $deployment := $app.deployments }}
{{- $known = append $known $deployment.name }}
{{- range $key, $value := get $.Values.serve.deployments $deployment.name | default dict }}
{{- $_ := set $deployment $key $value }}
{{- end }}
{{- end }}
{{- range $name, $_ := .Values.serve.deployments }}
{{- if not (has $name $known) }}{{ fail (printf "serve.deployments.%s: no such deployment in the Serve config (%s)" $name (join ", " $known)) }}{{ end }}
{{- end }}
{{- /* feature_port.port 0: the app has no FeatureGateway, and Serve refuses options for a deployment it lacks. */}}
{{- if not (($args.feature_port | default dict).port | default 0 | int) }}
{{- $kept := list }}
{{- range $deployment := $app.deployments }}
{{- if ne $deployment.name "FeatureGateway" }}{{ $kept = append $kept $deployment }}{{ end }}
{{- end }}
{{- $_ := set $app "deployments" $kept }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{- define "cliplens.podAnnotations" -}}
{{- if .Values.metrics.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.metrics.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{/* Environment of every Ray container: the store, S3, Redis, plus extraEnv. */}}
{{- define "cliplens.env" -}}
{{- $config := include "cliplens.serveConfig" . | fromYaml }}
- name: CLIPLENS_STORE
  value: {{ (first $config.applications).args.store_uri | quote }}
- name: CLIPLENS_S3_ENDPOINT
  value: {{ include "cliplens.s3.endpoint" . | quote }}
- name: CLIPLENS_S3_SECURE
  value: {{ .Values.s3.secure | quote }}
{{- with .Values.s3.region }}
- name: CLIPLENS_S3_REGION
  value: {{ . | quote }}
{{- end }}
- name: CLIPLENS_S3_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ include "cliplens.s3.secretName" . }}, key: access-key}
- name: CLIPLENS_S3_SECRET_KEY
  valueFrom:
    secretKeyRef: {name: {{ include "cliplens.s3.secretName" . }}, key: secret-key}
{{- if include "cliplens.redis.hasPassword" . }}
- name: CLIPLENS_REDIS_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ include "cliplens.redis.secretName" . }}, key: password}
{{- end }}
- name: CLIPLENS_REDIS_URL
  value: {{ include "cliplens.redis.url" . | quote }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The FeatureGateway's direct port from the Serve config's args.feature_port (0: none). */}}
{{- define "cliplens.featurePort" -}}
{{- $config := include "cliplens.serveConfig" . | fromYaml }}
{{- ((first $config.applications).args.feature_port | default dict).port | default 0 }}
{{- end }}

{{/* The label of every Ray pod (head and workers): what the headless attribution Service selects. */}}
{{- define "cliplens.rayNodeLabel" -}}
cliplens.io/ray-node: "true"
{{- end }}

{{/* The Attributors' direct port from the Serve config's args.attribution_port (0: none). */}}
{{- define "cliplens.attributionPort" -}}
{{- $config := include "cliplens.serveConfig" . | fromYaml }}
{{- ((first $config.applications).args.attribution_port | default dict).port | default 0 }}
{{- end }}

{{/* A Ray container's ports: GCS, dashboard, client and the direct feature port on the head; Serve (HTTP, gRPC), the Attributors' direct port and metrics on all. */}}
{{- define "cliplens.rayPorts" -}}
{{- if .head }}
- {name: gcs-server, containerPort: 6379}
- {name: dashboard, containerPort: 8265}
- {name: client, containerPort: 10001}
{{- $featurePort := include "cliplens.featurePort" .root | int }}
{{- if $featurePort }}
- {name: grpc-features, containerPort: {{ $featurePort }}}
{{- end }}
{{- end }}
- {name: serve, containerPort: 8000}
- {name: grpc, containerPort: 9000}
{{- $attributionPort := include "cliplens.attributionPort" .root | int }}
{{- if $attributionPort }}
- {name: grpc-attribution, containerPort: {{ $attributionPort }}}
{{- end }}
- {name: metrics, containerPort: {{ .root.Values.metrics.port }}}
{{- end }}

{{/* The Ray container of a group (kind: head or worker) with its resources; tokenFile: where the API tokens go, if anywhere. */}}
{{- define "cliplens.rayContainer" -}}
- name: ray-{{ .kind }}
  image: {{ include "cliplens.image" .root }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  env: {{- include "cliplens.env" .root | trim | nindent 4 }}
  ports: {{- include "cliplens.rayPorts" (dict "root" .root "head" (eq .kind "head")) | trim | nindent 4 }}
  {{- $tls := .root.Values.directPortsTls }}
  {{- if or .tokenFile $tls.secretName }}
  volumeMounts:
    {{- if .tokenFile }}
    - {name: api-tokens, mountPath: {{ dir .tokenFile }}, readOnly: true}
    {{- end }}
    {{- if $tls.secretName }}
    - {name: direct-ports-tls, mountPath: {{ $tls.mountPath }}, readOnly: true}
    {{- end }}
  {{- end }}
  resources: {{- toYaml .resources | nindent 4 }}
{{- end }}

{{/* Pod-level settings of a group: pull secrets, placement, the API-token and direct-port TLS volumes. */}}
{{- define "cliplens.podSpecExtras" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .group.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .group.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .group.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- $tlsSecret := .root.Values.directPortsTls.secretName }}
{{- if or .tokenFile $tlsSecret }}
volumes:
  {{- if .tokenFile }}
  - name: api-tokens
    secret:
      secretName: {{ include "cliplens.apiTokens.secretName" .root }}
      items: [{key: tokens, path: {{ base .tokenFile }}}]
  {{- end }}
  {{- if $tlsSecret }}
  - name: direct-ports-tls
    secret: {secretName: {{ $tlsSecret }}}
  {{- end }}
{{- end }}
{{- end }}
