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
The Serve config: files/serve_config.yaml (deploy/serve_config.yaml) with the user's overrides.
- serve.args is merged into the application's args (nested dicts key by key).
- serve.deployments is merged into the deployments by name: each field replaces the file's, except
  ray_actor_options, merged key by key (a deployment the file leaves out gets an entry). Serve
  replaces the code's ray_actor_options wholesale, so the result must give num_cpus and num_gpus.
- With args.feature_port.port 0 the app has no FeatureGateway, and Serve refuses options for a
  deployment the app lacks: its entry is left out.
Servers (S3, Redis) and the direct ports' TLS files are not args: they reach the app as CLIPLENS_*
variables (cliplens.env).
*/}}
{{- define "cliplens.serveConfig" -}}
{{- $config := .Files.Get "files/serve_config.yaml" | fromYaml }}
{{- if not $config.applications }}{{ fail "files/serve_config.yaml is missing or has no applications" }}{{ end }}
{{- $app := first $config.applications }}
{{- $args := mergeOverwrite ($app.args | default dict) (deepCopy .Values.serve.args) }}
{{- $_ := set $app "args" $args }}
{{- /* The code's DEPLOYMENT_DEFAULTS (cliplens.serve.deployment_defaults); a test keeps them equal. */}}
{{- $known := list "CliplensIngress" "Encoder" "SaeRunner" "Attributor" "FeatureGateway" }}
{{- $entries := dict }}
{{- range $deployment := $app.deployments }}{{ $_ := set $entries $deployment.name $deployment }}{{ end }}
{{- range $name := $known }}
{{- with get $.Values.serve.deployments $name }}
{{- $entry := get $entries $name | default (dict "name" $name) }}
{{- range $key, $value := . }}
{{- if eq $key "ray_actor_options" }}
{{- $value = mergeOverwrite (deepCopy ($entry.ray_actor_options | default dict)) (deepCopy $value) }}
{{- end }}
{{- $_ := set $entry $key $value }}
{{- end }}
{{- $_ := set $entries $name $entry }}
{{- end }}
{{- end }}
{{- range $name, $_ := .Values.serve.deployments }}
{{- if not (has $name $known) }}{{ fail (printf "serve.deployments.%s: no such deployment (%s)" $name (join ", " $known)) }}{{ end }}
{{- end }}
{{- $featurePort := (($args.feature_port | default dict).port | default 0) | int }}
{{- $kept := list }}
{{- range $name := $known }}
{{- $entry := get $entries $name }}
{{- if and $entry (or $featurePort (ne $name "FeatureGateway")) }}
{{- with $entry.ray_actor_options }}
{{- if not (and (hasKey . "num_cpus") (hasKey . "num_gpus")) }}
{{- fail (printf "deployment %s: ray_actor_options must give num_cpus and num_gpus (Serve replaces the code's dict)" $name) }}
{{- end }}
{{- end }}
{{- $kept = append $kept $entry }}
{{- end }}
{{- end }}
{{- $_ := set $app "deployments" $kept }}
{{- toYaml $config }}
{{- end }}

{{/* The application's args in the Serve config (after serve.args). */}}
{{- define "cliplens.args" -}}
{{- (first (include "cliplens.serveConfig" . | fromYaml).applications).args | toYaml }}
{{- end }}

{{- define "cliplens.podAnnotations" -}}
{{- if .Values.metrics.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.metrics.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{/*
Environment of every Ray container: the app's connections as AppSettings reads them (CLIPLENS_* names,
nested fields with __), for the replicas and for batch jobs started on the cluster, plus extraEnv.
CLIPLENS_STORE is the Serve config's store_uri (an arg, which wins over it in the app), for the jobs.
CLIPLENS_REDIS_PASSWORD is no setting: Kubernetes expands it into CLIPLENS_REDIS_URL.
*/}}
{{- define "cliplens.env" -}}
{{- $args := include "cliplens.args" . | fromYaml }}
{{- with $args.store_uri }}
- name: CLIPLENS_STORE
  value: {{ . | quote }}
{{- end }}
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
{{- with .Values.directPortsTls.secretName }}
{{- range $port := list "FEATURE_PORT" "ATTRIBUTION_PORT" }}
- name: CLIPLENS_{{ $port }}__TLS_CERT_FILE
  value: {{ printf "%s/tls.crt" $.Values.directPortsTls.mountPath | quote }}
- name: CLIPLENS_{{ $port }}__TLS_KEY_FILE
  value: {{ printf "%s/tls.key" $.Values.directPortsTls.mountPath | quote }}
{{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The label of every Ray pod (head and workers): what the headless attribution Service selects. */}}
{{- define "cliplens.rayNodeLabel" -}}
cliplens.io/ray-node: "true"
{{- end }}

{{/* The direct ports from the app's args (0, the code's default: not served). */}}
{{- define "cliplens.featurePort" -}}
{{- ((include "cliplens.args" . | fromYaml).feature_port | default dict).port | default 0 }}
{{- end }}

{{- define "cliplens.attributionPort" -}}
{{- ((include "cliplens.args" . | fromYaml).attribution_port | default dict).port | default 0 }}
{{- end }}

{{/* Serve's proxy ports (HTTP, gRPC) from the Serve config. */}}
{{- define "cliplens.httpPort" -}}
{{- (include "cliplens.serveConfig" . | fromYaml).http_options.port }}
{{- end }}

{{- define "cliplens.grpcPort" -}}
{{- (include "cliplens.serveConfig" . | fromYaml).grpc_options.port }}
{{- end }}

{{/* A Ray container's ports: GCS, dashboard, client and the direct feature port on the head; Serve (HTTP
`serve`, gRPC `serve-grpc`), the Attributors' direct port and metrics on all. The direct ports are not
Serve's proxy: their names must not start with serve. */}}
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
{{- /* KubeRay's Serve Service takes only the ports named serve or serve-*: Serve's proxy ports. */}}
- {name: serve, containerPort: {{ include "cliplens.httpPort" .root }}}
- {name: serve-grpc, containerPort: {{ include "cliplens.grpcPort" .root }}}
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

{{/* A RayJob's entrypoint: `cliplens <command>` and its arguments, each single-quoted for the shell. */}}
{{- define "cliplens.entrypoint" -}}
{{- $words := list "cliplens" .command }}
{{- range .args }}
{{- $words = append $words (squote .) }}
{{- end }}
{{- $words | join " " }}
{{- end }}

{{/* The fields every cliplens RayJob shares (job: its values): the RayService's cluster, whose pods have
the CLIPLENS_* environment; the submitter Job's mode and limits; where the driver runs (on a node with
entrypointNumCpus / entrypointNumGpus free when they are above 0, else on the head). */}}
{{- define "cliplens.rayJobSpec" -}}
clusterSelector:
  ray.io/cluster: {{ .job.clusterName }}
submissionMode: K8sJobMode
{{- with .job.entrypointNumCpus }}
entrypointNumCpus: {{ . }}
{{- end }}
{{- with .job.entrypointNumGpus }}
entrypointNumGpus: {{ . }}
{{- end }}
activeDeadlineSeconds: {{ .job.activeDeadlineSeconds }}
backoffLimit: {{ .job.backoffLimit }}
{{- end }}
