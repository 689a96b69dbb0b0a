"""The Helm chart (helm/cliplens), checked offline with the real helm binary (`make helm`).

Standard kinds validate with kubernetes-validate (strict: unknown fields fail); RayService and RayJob
validate against the openAPIV3Schema of the KubeRay v1.7.0 CRDs (vendored in kuberay-v1.7.0/, see its
README), also made strict, because the API server would silently prune a misspelt field.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from cliplens.serve.settings import AppSettings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "cliplens"
HELM = REPO / ".tools" / "bin" / "helm"
KUBERAY = Path(__file__).resolve().parent / "kuberay-v1.7.0"  # the CRDs' v1 schemas
SERVE_CONFIG = REPO / "deploy" / "serve_config.yaml"
K8S_VERSION = "1.36.0"
RELEASE = "cliplens"
GPU = "nvidia.com/gpu"
EXTERNAL = [
    "--set", "s3.endpoint=https://s3.example.com",
    "--set", "s3.existingSecret=store-creds",
    "--set", "redis.host=redis.cache.svc",
    "--set", "redis.password=p4ss",
]  # fmt: skip
EXTRACT = ["--set", "extractJob.enabled=true", "--set", "extractJob.clusterName=cliplens-raycluster-abcde"]
CPU = ["-f", str(CHART / "values-cpu.yaml")]
Manifest = dict[str, Any]


def helm(command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `helm <command> ... --kube-version` (a helm built by `go install` otherwise assumes Kubernetes 1.20)."""
    assert HELM.is_file(), f"{HELM} is missing: run `make helm`"
    home = REPO / ".tools" / "helm-home"
    env = {
        **os.environ,
        **{f"HELM_{kind.upper()}_HOME": str(home / kind) for kind in ("cache", "config", "data")},
    }
    argv = [str(HELM), command, *args, "--kube-version", K8S_VERSION]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@cache
def _render(release: str, args: tuple[str, ...]) -> tuple[Manifest, ...]:
    out = helm("template", release, str(CHART), "--namespace", "ml", *args).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


HEAD_PLACEMENT = {"num_cpus": 0, "num_gpus": 0, "resources": {"cliplens_feature_port": 1}}


def render(*args: str, release: str = RELEASE) -> list[Manifest]:
    """The rendered manifests (deep copies: tests may change them)."""
    return copy.deepcopy(list(_render(release, args)))


def one(manifests: list[Manifest], kind: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def serve_config(manifests: list[Manifest]) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(one(manifests, "RayService")["spec"]["serveConfigV2"])
    return config


def deployments(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in config["applications"][0]["deployments"]}


def pod_templates(manifests: list[Manifest]) -> dict[str, dict[str, Any]]:
    cluster = one(manifests, "RayService")["spec"]["rayClusterConfig"]
    groups = {"head": cluster["headGroupSpec"]}
    groups.update({g["groupName"]: g for g in cluster["workerGroupSpecs"]})
    return {name: group["template"] for name, group in groups.items()}


def _strict(schema: Any) -> Any:
    """The schema with additionalProperties: false wherever properties are listed and nothing else is allowed."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        open_ended = "additionalProperties" in schema or schema.get("x-kubernetes-preserve-unknown-fields")
        if "properties" in schema and not open_ended:
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@cache
def crd_validator(kind: str) -> jsonschema.Draft7Validator:
    crd = json.loads(gzip.decompress((KUBERAY / f"ray.io_{kind.lower()}s.schema.json.gz").read_bytes()))
    assert (crd["kind"], crd["group"], crd["version"]) == (kind, "ray.io", "v1")
    return jsonschema.Draft7Validator(_strict(crd["openAPIV3Schema"]))


def validate(manifest: Manifest) -> None:
    if manifest["apiVersion"] == "ray.io/v1":
        crd_validator(manifest["kind"]).validate(manifest)
    else:
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


VARIANTS: dict[str, tuple[list[str], set[str]]] = {
    "default": ([], {"RayService", "Secret", "Service", "StatefulSet", "Deployment"}),
    "cpu": (CPU, {"RayService", "Secret", "Service", "StatefulSet", "Deployment"}),
    "external": (EXTERNAL, {"RayService", "Secret", "Service"}),
    "extract-job": (EXTRACT, {"RayService", "RayJob", "Secret", "Service", "StatefulSet", "Deployment"}),
}


def test_lint() -> None:
    for values in ([], CPU):
        result = helm("lint", "--strict", str(CHART), *values)
        assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_manifest_validates(variant: str) -> None:
    args, kinds = VARIANTS[variant]
    manifests = render(*args)
    assert {m["kind"] for m in manifests} == kinds
    for manifest in manifests:
        validate(manifest)


def test_validation_is_strict() -> None:
    """A misspelt field fails both validators (else the checks above would prove little)."""
    manifests = render()
    service = one(manifests, "RayService")
    service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplica"] = 4
    with pytest.raises(jsonschema.ValidationError, match="maxReplica"):
        validate(service)
    statefulset = one(manifests, "StatefulSet")
    statefulset["spec"]["replica"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(statefulset)


def charted_serve_config() -> dict[str, Any]:
    """deploy/serve_config.yaml with the one default the chart changes: the FeatureGateway on the head."""
    config: dict[str, Any] = yaml.safe_load(SERVE_CONFIG.read_text())
    deployments(config)["FeatureGateway"]["ray_actor_options"] = HEAD_PLACEMENT
    return config


def test_serve_config_is_the_projects() -> None:
    link = CHART / "files" / "serve_config.yaml"
    assert link.read_bytes() == SERVE_CONFIG.read_bytes()
    assert serve_config(render()) == charted_serve_config()


def test_gpu_variant_keeps_num_gpus_and_cpu_variant_drops_them() -> None:
    original = deployments(charted_serve_config())
    gpu, cpu = deployments(serve_config(render())), deployments(serve_config(render(*CPU)))
    assert sum(d["ray_actor_options"]["num_gpus"] for d in gpu.values()) > 0
    for name, deployment in original.items():
        # Serve replaces the whole ray_actor_options dict: every variant must state both resources.
        assert {"num_cpus", "num_gpus"} <= set(gpu[name]["ray_actor_options"])
        assert gpu[name] == deployment
        assert cpu[name]["ray_actor_options"] == {**deployment["ray_actor_options"], "num_gpus": 0}
        assert {k: v for k, v in cpu[name].items() if k != "ray_actor_options"} == {
            k: v for k, v in deployment.items() if k != "ray_actor_options"
        }


def test_gpus_on_the_worker_group_only() -> None:
    templates = pod_templates(render())
    worker = templates.pop("gpu")["spec"]["containers"][0]["resources"]
    assert worker["limits"][GPU] == worker["requests"][GPU] == 1
    assert GPU not in yaml.safe_dump(templates["head"]["spec"]["containers"])
    assert GPU not in yaml.safe_dump(render(*CPU))


def test_head_and_autoscaler() -> None:
    spec = one(render(), "RayService")["spec"]
    cluster = spec["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["autoscalerOptions"]["upscalingMode"] == "Default"
    worker = cluster["workerGroupSpecs"][0]
    assert (worker["minReplicas"], worker["maxReplicas"]) == (1, 4)
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    ports = {p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert {9000, 8000, 8265, 8080} <= ports
    assert {p["port"] for p in spec["serveService"]["spec"]["ports"]} == {9000, 8000}
    annotations = head["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8080",
        "prometheus.io/path": "/metrics",
    }


def test_feature_gateway_runs_on_the_head_behind_its_service() -> None:
    for variant in ([], CPU):
        manifests = render(*variant)
        config = serve_config(manifests)
        port = config["applications"][0]["args"]["feature_port"]["port"]
        gateway = deployments(config)["FeatureGateway"]["ray_actor_options"]
        head = one(manifests, "RayService")["spec"]["rayClusterConfig"]["headGroupSpec"]
        offered = json.loads(json.loads(head["rayStartParams"]["resources"]))
        assert set(gateway["resources"]) <= set(offered) and gateway["num_cpus"] == 0
        assert port in {p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
        (service,) = [
            m for m in manifests if m["kind"] == "Service" and m["metadata"]["name"].endswith("-features")
        ]
        assert service["spec"]["selector"]["app.kubernetes.io/component"] == "ray-head"
        labels = head["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(port, port)]
    no_gateway = render("--set", "serve.args.feature_port.port=0")
    assert not [m for m in no_gateway if m["metadata"]["name"].endswith("-features")]
    # Serve refuses options for a deployment the app does not have: the gateway's entry goes too.
    shipped = set(deployments(yaml.safe_load(SERVE_CONFIG.read_text())))
    assert set(deployments(serve_config(no_gateway))) == shipped - {"FeatureGateway"}


def test_attributors_direct_port_is_a_headless_service_over_the_ray_pods() -> None:
    for variant in ([], CPU):
        manifests = render(*variant)
        port = serve_config(manifests)["applications"][0]["args"]["attribution_port"]["port"]
        cluster = one(manifests, "RayService")["spec"]["rayClusterConfig"]
        pods = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
        (service,) = [
            m for m in manifests if m["kind"] == "Service" and m["metadata"]["name"].endswith("-attribution")
        ]
        assert service["spec"]["clusterIP"] == "None"
        assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(port, port)]
        for pod in pods:
            assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
            assert port in {p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
        others = [m for m in manifests if m["kind"] in {"Deployment", "StatefulSet"}]
        for workload in others:  # MinIO and Redis pods are not selected
            labels = workload["spec"]["template"]["metadata"]["labels"]
            assert not service["spec"]["selector"].items() <= labels.items()
    no_port = render("--set", "serve.args.attribution_port.port=0")
    assert not [m for m in no_port if m["metadata"]["name"].endswith("-attribution")]
    ports = {
        p["name"]
        for p in one(no_port, "RayService")["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"][
            "containers"
        ][0]["ports"]
    }
    assert "grpc-attribution" not in ports


def test_direct_ports_speak_tls_from_a_mounted_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPLENS_S3_ENDPOINT", "minio:9000")  # the chart's env for the args' s3:// store
    manifests = render("--set", "directPortsTls.secretName=cliplens-direct-tls")
    args = serve_config(manifests)["applications"][0]["args"]
    for name in ("feature_port", "attribution_port"):
        assert args[name]["tls_cert_file"] == "/etc/cliplens/direct-tls/tls.crt"
        assert args[name]["tls_key_file"] == "/etc/cliplens/direct-tls/tls.key"
    AppSettings.model_validate(args)
    cluster = one(manifests, "RayService")["spec"]["rayClusterConfig"]
    for pod in [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]:
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert volumes["direct-ports-tls"]["secret"]["secretName"] == "cliplens-direct-tls"
        mounts = {m["name"]: m["mountPath"] for m in pod["spec"]["containers"][0]["volumeMounts"]}
        assert mounts["direct-ports-tls"] == "/etc/cliplens/direct-tls"
        assert "api-tokens" in mounts  # the token file is still mounted beside it
    plain = serve_config(render())["applications"][0]["args"]
    assert all("tls_cert_file" not in plain[name] for name in ("feature_port", "attribution_port"))


def env_of(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in template["spec"]["containers"][0]["env"]}


def test_in_chart_stores_wiring() -> None:
    manifests = render()
    config = serve_config(manifests)
    for template in pod_templates(manifests).values():
        env = env_of(template)
        assert env["CLIPLENS_STORE"]["value"] == config["applications"][0]["args"]["store_uri"]
        assert env["CLIPLENS_S3_ENDPOINT"]["value"] == "cliplens-minio:9000"
        assert env["CLIPLENS_S3_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {
            "name": "cliplens-s3",
            "key": "secret-key",
        }
        # The Serve config's redis_url names the in-chart Redis, so it is kept as is.
        assert env["CLIPLENS_REDIS_URL"]["value"] == config["applications"][0]["args"]["redis_url"]
    services = {m["metadata"]["name"] for m in manifests if m["kind"] == "Service"}
    assert services == {"cliplens-minio", "cliplens-redis", "cliplens-features", "cliplens-attribution"}
    minio = one(manifests, "StatefulSet")["spec"]
    assert minio["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "50Gi"


def test_external_stores_and_redis_password() -> None:
    manifests = render(*EXTERNAL)
    env_list = pod_templates(manifests)["head"]["spec"]["containers"][0]["env"]
    names = [e["name"] for e in env_list]
    env = env_of(pod_templates(manifests)["head"])
    assert env["CLIPLENS_S3_ENDPOINT"]["value"] == "https://s3.example.com"
    assert env["CLIPLENS_S3_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "store-creds"
    assert env["CLIPLENS_REDIS_URL"]["value"] == "redis://:$(CLIPLENS_REDIS_PASSWORD)@redis.cache.svc:6379/0"
    # Kubernetes expands $(VAR) only from variables defined earlier in the list.
    assert names.index("CLIPLENS_REDIS_PASSWORD") < names.index("CLIPLENS_REDIS_URL")
    assert "p4ss" not in yaml.safe_dump(one(manifests, "RayService"))
    # The config's redis_url no longer names the right server: replicas read CLIPLENS_REDIS_URL.
    assert "redis_url" not in serve_config(manifests)["applications"][0]["args"]
    secrets = {s["metadata"]["name"] for s in manifests if s["kind"] == "Secret"}
    assert secrets == {
        "cliplens-redis-auth",
        "cliplens-api-tokens",
    }  # no cliplens-s3: an existing Secret is named


def test_api_tokens_mounted_at_the_configured_file() -> None:
    token_file = Path(
        yaml.safe_load(SERVE_CONFIG.read_text())["applications"][0]["args"]["auth"]["token_file"]
    )
    manifests = render("--set", "apiTokens.tokens={a,b}")
    secret = next(m for m in manifests if m["metadata"]["name"] == "cliplens-api-tokens")
    assert secret["data"]["tokens"] == "YQpiCg=="  # "a\nb\n"
    for template in pod_templates(manifests).values():
        mount = template["spec"]["containers"][0]["volumeMounts"][0]
        volume = template["spec"]["volumes"][0]
        assert (mount["name"], mount["mountPath"]) == (volume["name"], str(token_file.parent))
        assert volume["secret"] == {
            "secretName": "cliplens-api-tokens",
            "items": [{"key": "tokens", "path": token_file.name}],
        }


def test_extract_job_runs_on_the_given_cluster() -> None:
    job = one(render(*EXTRACT, "--set", "extractJob.inputs=s3://data/my images/"), "RayJob")["spec"]
    assert job["clusterSelector"] == {"ray.io/cluster": "cliplens-raycluster-abcde"}
    assert job["entrypoint"] == "cliplens extract 's3://data/my images/' '--model' 'demo' '--site' 'final'"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "s3.endpoint=s3.example.com:443"], "s3.existingSecret"),
        (["--set", "minio.enabled=false"], "set s3.endpoint"),
        (["--set", "extractJob.enabled=true"], "extractJob.clusterName is required"),
        (["--set", "serve.deployments.Encoderr.max_ongoing_requests=1"], "serve.deployments.Encoderr"),
    ],
)
def test_misconfiguration_fails_with_a_message(args: list[str], message: str) -> None:
    result = helm("template", RELEASE, str(CHART), *args, check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_other_release_names_read_redis_from_the_environment() -> None:
    manifests = render(release="demo")
    env = env_of(pod_templates(manifests)["head"])
    assert env["CLIPLENS_REDIS_URL"]["value"] == "redis://demo-cliplens-redis:6379/0"
    assert "redis_url" not in serve_config(manifests)["applications"][0]["args"]
