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
import re
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel, TypeAdapter

from cliplens.serve.deployment_defaults import (
    BATCHED,
    DEPLOYMENT_DEFAULTS,
    check_batching,
    deployment_options,
)
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
CLUSTER = "cliplens-raycluster-abcde"
EXTRACT = ["--set", "extractJob.enabled=true", "--set", f"extractJob.clusterName={CLUSTER}"]
INDEX = [
    "--set",
    "indexJob.enabled=true",
    "--set",
    f"indexJob.clusterName={CLUSTER}",
    "--set",
    "indexJob.saeId=cifar-topk",
]
SWEEP = [
    "--set",
    "sweepJob.enabled=true",
    "--set",
    f"sweepJob.clusterName={CLUSTER}",
    "--set",
    "sweepJob.run=0123456789abcdef",
]
CPU = ["-f", str(CHART / "values-cpu.yaml")]
TLS_DIR = "/etc/cliplens/direct-tls"  # values.yaml's directPortsTls.mountPath
TLS = ["--set", "directPortsTls.secretName=cliplens-direct-tls"]
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
CPU_VALUES = yaml.safe_load((CHART / "values-cpu.yaml").read_text())
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


def file_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(SERVE_CONFIG.read_text())
    return config


def file_args() -> dict[str, Any]:
    args: dict[str, Any] = file_config()["applications"][0]["args"]
    return args


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
    "index-job": (INDEX, {"RayService", "RayJob", "Secret", "Service", "StatefulSet", "Deployment"}),
    "sweep-job": (
        SWEEP,
        {"RayService", "RayJob", "ConfigMap", "Secret", "Service", "StatefulSet", "Deployment"},
    ),
    "direct-ports-tls": (TLS, {"RayService", "Secret", "Service", "StatefulSet", "Deployment"}),
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
    """deploy/serve_config.yaml with the one entry values.yaml adds: the FeatureGateway on the head."""
    config = file_config()
    gateway = VALUES["serve"]["deployments"]["FeatureGateway"]
    config["applications"][0]["deployments"].append({"name": "FeatureGateway", **gateway})
    return config


def test_serve_config_is_the_projects() -> None:
    link = CHART / "files" / "serve_config.yaml"
    assert link.read_bytes() == SERVE_CONFIG.read_bytes()
    assert serve_config(render()) == charted_serve_config()
    # The chart sets values through the environment: without serve.args, the args are the file's.
    for args in (CPU, EXTERNAL, TLS):
        assert serve_config(render(*args))["applications"][0]["args"] == file_args()
    assert serve_config(render(release="demo"))["applications"][0]["args"] == file_args()


def test_serve_args_merge_into_the_files() -> None:
    args = serve_config(render("--set", "serve.args.attribution_port.max_concurrent_rpcs=64"))
    assert args["applications"][0]["args"] == {
        **file_args(),
        "attribution_port": {**file_args()["attribution_port"], "max_concurrent_rpcs": 64},
    }


def test_gpu_variant_keeps_num_gpus_and_cpu_variant_drops_them() -> None:
    gpu, cpu = deployments(serve_config(render())), deployments(serve_config(render(*CPU)))
    assert sum(d["ray_actor_options"]["num_gpus"] for d in gpu.values()) > 0
    assert set(cpu) == set(gpu)
    for name, deployment in gpu.items():
        # Serve replaces the whole ray_actor_options dict: every variant must state both resources.
        assert {"num_cpus", "num_gpus"} <= set(deployment["ray_actor_options"])
        # values-cpu.yaml gives num_gpus only; the chart keeps the config's num_cpus.
        assert cpu[name]["ray_actor_options"] == {**deployment["ray_actor_options"], "num_gpus": 0}
        assert {k: v for k, v in cpu[name].items() if k != "ray_actor_options"} == {
            k: v for k, v in deployment.items() if k != "ray_actor_options"
        }


@pytest.mark.parametrize("values", [VALUES, CPU_VALUES], ids=["values", "values-cpu"])
def test_values_carry_only_overrides(values: dict[str, Any]) -> None:
    """The shipped values give no app args (those live in deploy/serve_config.yaml) and each deployment
    option they give differs from what it overrides: the file's entry, else the code's table."""
    serve = values.get("serve", {})
    assert not serve.get("args"), "app settings belong in deploy/serve_config.yaml"
    in_file = {
        name: {k: v for k, v in d.items() if k != "name"} for name, d in deployments(file_config()).items()
    }
    for name, override in serve.get("deployments", {}).items():
        assert name in DEPLOYMENT_DEFAULTS, f"serve.deployments.{name}: not in DEPLOYMENT_DEFAULTS"
        base = deployment_options(name, in_file.get(name))
        for option, value in override.items():
            if option == "ray_actor_options" and option in in_file.get(name, {}):
                # Merged key by key into the file's dict: each key must change it.
                for key, resource in value.items():
                    assert resource != base[option].get(key), f"{name}.{option}.{key} restates {resource!r}"
            else:  # a whole ray_actor_options replaces the table's (Serve's rule): complete, and different
                assert value != base.get(option), f"{name}.{option} restates {value!r}"


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
    for group in [head, *cluster["workerGroupSpecs"]]:  # Ray's exporter on metrics.port
        assert group["rayStartParams"]["metrics-export-port"] == str(VALUES["metrics"]["port"])
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
    assert deployments(serve_config(no_gateway)) == deployments(file_config())


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


def test_direct_ports_speak_tls_from_a_mounted_secret() -> None:
    manifests = render(*TLS)
    for pod in pod_templates(manifests).values():
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert volumes["direct-ports-tls"]["secret"]["secretName"] == "cliplens-direct-tls"
        mounts = {m["name"]: m["mountPath"] for m in pod["spec"]["containers"][0]["volumeMounts"]}
        assert mounts["direct-ports-tls"] == TLS_DIR
        assert "api-tokens" in mounts  # the token file is still mounted beside it
        env = env_of(pod)
        for port in ("FEATURE_PORT", "ATTRIBUTION_PORT"):
            assert env[f"CLIPLENS_{port}__TLS_CERT_FILE"]["value"] == f"{TLS_DIR}/tls.crt"
            assert env[f"CLIPLENS_{port}__TLS_KEY_FILE"]["value"] == f"{TLS_DIR}/tls.key"
    assert not [name for name in env_of(pod_templates(render())["head"]) if "TLS" in name]


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
        assert env["CLIPLENS_REDIS_URL"]["value"] == "redis://cliplens-redis:6379/0"
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
    secrets = {s["metadata"]["name"] for s in manifests if s["kind"] == "Secret"}
    assert secrets == {
        "cliplens-redis-auth",
        "cliplens-api-tokens",
    }  # no cliplens-s3: an existing Secret is named


def test_api_tokens_mounted_at_the_configured_file() -> None:
    token_file = Path(file_args()["auth"]["token_file"])
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
    assert job["clusterSelector"] == {"ray.io/cluster": CLUSTER}
    assert job["entrypoint"] == "cliplens extract 's3://data/my images/' '--model' 'demo' '--site' 'final'"


def rayjobs(manifests: list[Manifest]) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m["spec"] for m in manifests if m["kind"] == "RayJob"}


def test_jobs_are_off_by_default_and_each_is_its_own_rayjob() -> None:
    assert rayjobs(render()) == {}
    jobs = rayjobs(render(*EXTRACT, *INDEX, *SWEEP))
    assert set(jobs) == {"cliplens-extract", "cliplens-index", "cliplens-sweep"}
    for spec in jobs.values():
        assert spec["clusterSelector"] == {"ray.io/cluster": CLUSTER}
        assert spec["submissionMode"] == "K8sJobMode"
        # No entrypoint resources asked by default: the driver starts on the head.
        assert "entrypointNumGpus" not in spec and "entrypointNumCpus" not in spec


def test_index_job_runs_cliplens_index() -> None:
    job = rayjobs(render(*INDEX, "--set-json", 'indexJob.args=["--model","demo","--k","16"]'))[
        "cliplens-index"
    ]
    assert (
        job["entrypoint"]
        == "cliplens index 's3://cliplens/inputs/' '--sae-id' 'cifar-topk' '--model' 'demo' '--k' '16'"
    )
    gpu = rayjobs(render(*INDEX, "--set", "indexJob.entrypointNumGpus=1"))["cliplens-index"]
    assert gpu["entrypointNumGpus"] == 1


def sweep_sae_ids(sweep_yaml: str, directory: Path) -> list[str]:
    """The SAE ids `cliplens train-sae --sweep` reads from this file (its own parser and checks)."""
    import argparse

    from cliplens.jobs.train_sae_command import add_arguments, sweep_jobs

    path = directory / "sweep.yaml"
    path.write_text(sweep_yaml)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--run", "0123456789abcdef", "--sweep", str(path)])
    return [job.sae_id for job in sweep_jobs(args, d_in=128)]


def test_sweep_job_trains_the_values_sweep_from_its_configmap(tmp_path: Path) -> None:
    manifests = render(*SWEEP)
    (configmap,) = [m for m in manifests if m["kind"] == "ConfigMap"]
    assert configmap["metadata"]["name"] == "cliplens-sweep"
    sweep = yaml.safe_load(configmap["data"]["sweep.yaml"])
    assert sweep == VALUES["sweepJob"]["sweep"]
    # train-sae reads the file as the values give it (its settings, one job per entry).
    assert sweep_sae_ids(configmap["data"]["sweep.yaml"], tmp_path) == ["topk-k16", "topk-k32"]
    job = rayjobs(manifests)["cliplens-sweep"]
    assert job["entrypoint"] == "cliplens train-sae '--run' '0123456789abcdef' '--sweep' 'sweep.yaml'"
    # The submitter mounts the ConfigMap and uploads the folder as the job's working_dir: the driver,
    # on whichever Ray pod it starts, reads ./sweep.yaml.
    working_dir = yaml.safe_load(job["runtimeEnvYAML"])["working_dir"]
    pod = job["submitterPodTemplate"]["spec"]
    (container,) = pod["containers"]
    assert "command" not in container  # KubeRay adds `ray job submit` (and the token with auth on)
    (mount,) = container["volumeMounts"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mount["mountPath"] == working_dir == "/config"
    assert volumes[mount["name"]]["configMap"]["name"] == "cliplens-sweep"
    assert (
        container["image"]
        == one(manifests, "RayService")["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"][
            "containers"
        ][0]["image"]
    )
    assert pod["restartPolicy"] == "Never"


def test_sweep_values_set_the_file(tmp_path: Path) -> None:
    sweep = {"arch": "jumprelu", "epochs": 2, "saes": [{"sae_id": "jr-a", "l0_coeff": 0.01}]}
    manifests = render(*SWEEP, "--set-json", f"sweepJob.sweep={json.dumps(sweep)}")
    (configmap,) = [m for m in manifests if m["kind"] == "ConfigMap"]
    assert yaml.safe_load(configmap["data"]["sweep.yaml"]) == sweep
    assert sweep_sae_ids(configmap["data"]["sweep.yaml"], tmp_path) == ["jr-a"]


def container_ports(template: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}


@pytest.mark.parametrize(
    "variant",
    [[], CPU, ["--set", "serve.args.feature_port.port=0"]],
    ids=["default", "cpu", "no-feature-port"],
)
def test_serve_ports_carry_the_names_kuberay_serves(variant: list[str]) -> None:
    """KubeRay builds its Serve Service from the container ports named serve or serve-*: Serve's HTTP
    port is `serve`, its gRPC port `serve-grpc`, and no other port (the direct ports) starts with serve."""
    manifests = render(*variant)
    config = serve_config(manifests)
    want = {"serve": config["http_options"]["port"], "serve-grpc": config["grpc_options"]["port"]}
    for group, template in pod_templates(manifests).items():
        ports = container_ports(template)
        assert {name: port for name, port in ports.items() if name.startswith("serve")} == want, group
    service = one(manifests, "RayService")["spec"]["serveService"]["spec"]
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["ports"]} == {
        name: (port, name) for name, port in want.items()
    }
    others = [m for m in manifests if m["kind"] == "Service"]
    for other in others:  # the chart's own Services: none names a port serve*
        assert not [p for p in other["spec"]["ports"] if p["name"].startswith("serve")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "s3.endpoint=s3.example.com:443"], "s3.existingSecret"),
        (["--set", "minio.enabled=false"], "set s3.endpoint"),
        (["--set", "extractJob.enabled=true"], "extractJob.clusterName is required"),
        (["--set", "indexJob.enabled=true", "--set", "indexJob.saeId=a"], "indexJob.clusterName is required"),
        (["--set", "indexJob.enabled=true", "--set", "indexJob.clusterName=c"], "indexJob.saeId is required"),
        (["--set", "sweepJob.enabled=true", "--set", "sweepJob.run=r"], "sweepJob.clusterName is required"),
        (["--set", "sweepJob.enabled=true", "--set", "sweepJob.clusterName=c"], "sweepJob.run is required"),
        (
            [*SWEEP, "--set-json", 'sweepJob.sweep={"epochs": 5, "saes": []}'],
            "sweepJob.sweep.saes must list the SAEs to train",
        ),
        (
            [*SWEEP, "--set-json", 'sweepJob.sweep={"saes": [{"k": 16}]}'],
            "sweepJob.sweep.saes[0] needs an sae_id",
        ),
        # The chart knows the code's deployments, and names them.
        (
            ["--set", "serve.deployments.Encoderr.max_ongoing_requests=1"],
            f"serve.deployments.Encoderr: no such deployment ({', '.join(DEPLOYMENT_DEFAULTS)})",
        ),
        # Serve replaces the code's ray_actor_options: an entry must give both resources.
        (
            ["--set", "serve.deployments.FeatureGateway.ray_actor_options.num_cpus=null"],
            "deployment FeatureGateway: ray_actor_options must give num_cpus and num_gpus",
        ),
    ],
)
def test_misconfiguration_fails_with_a_message(args: list[str], message: str) -> None:
    result = helm("template", RELEASE, str(CHART), *args, check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_other_release_names_read_redis_from_the_environment() -> None:
    env = env_of(pod_templates(render(release="demo"))["head"])
    assert env["CLIPLENS_REDIS_URL"]["value"] == "redis://demo-cliplens-redis:6379/0"


# ---- The settings the app builds in the chart's pods are what the values say ----


def settings_env_names(
    model: type[BaseModel] = AppSettings, prefix: str = "CLIPLENS_"
) -> dict[str, tuple[str, ...]]:
    """Every environment variable AppSettings reads (its alias, else prefix + field; nested with __),
    with the field path it sets."""
    names: dict[str, tuple[str, ...]] = {}
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        env = alias.upper() if isinstance(alias, str) else f"{prefix}{name.upper()}"
        names[env] = (name,)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            nested = settings_env_names(field.annotation, f"{env}__")
            names.update({sub: (name, *path) for sub, path in nested.items()})
    return names


def resolved_env(container: dict[str, Any]) -> dict[str, str]:
    """A container's environment as Kubernetes gives it: $(NAME) expanded from the variables before it,
    a Secret's value as a placeholder naming it."""
    env: dict[str, str] = {}
    for var in container["env"]:
        if "valueFrom" in var:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = f"secret-{ref['name']}-{ref['key']}"
        else:
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), var["value"])
    return env


def unread_variables(container: dict[str, Any], settings: AppSettings) -> list[str]:
    """The container's CLIPLENS_* variables that AppSettings does not read back; a variable that is only
    expanded into another one (the Redis password into the URL) is no setting."""
    names = settings_env_names()
    expanded = {m for var in container["env"] for m in re.findall(r"\$\((\w+)\)", var.get("value", ""))}
    unread = []
    for name, value in resolved_env(container).items():
        if not name.startswith("CLIPLENS_") or name in expanded:
            continue
        actual: Any = settings
        for part in names.get(name, ("<unknown>",)):
            actual = getattr(actual, part, None)
        if actual is None or TypeAdapter(type(actual)).validate_python(value) != actual:
            unread.append(name)
    return unread


def pod_settings(args: dict[str, Any], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> AppSettings:
    """AppSettings as build_app makes them in a pod: the args, over this environment only."""
    for name in [name for name in os.environ if name.upper().startswith("CLIPLENS_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return AppSettings.model_validate(args)


@dataclass(frozen=True)
class Pods:
    """What the values say the app's settings are in the Ray pods."""

    args: tuple[str, ...]
    store: str
    s3_endpoint: str
    s3_secure: bool
    redis_url: str
    tls: bool = False
    release: str = RELEASE


FILE_STORE = file_args()["store_uri"]
IN_CHART = {
    "s3_endpoint": "cliplens-minio:9000",
    "s3_secure": False,
    "redis_url": "redis://cliplens-redis:6379/0",
}
POD_VARIANTS = {
    "default": Pods((), FILE_STORE, **IN_CHART),
    "cpu": Pods(tuple(CPU), FILE_STORE, **IN_CHART),
    "external": Pods(
        tuple(EXTERNAL),
        FILE_STORE,
        "https://s3.example.com",
        True,
        "redis://:secret-cliplens-redis-auth-password@redis.cache.svc:6379/0",
    ),
    "direct-ports-tls": Pods(tuple(TLS), FILE_STORE, **IN_CHART, tls=True),
    "other-release": Pods(
        (),
        FILE_STORE,
        "demo-cliplens-minio:9000",
        False,
        "redis://demo-cliplens-redis:6379/0",
        release="demo",
    ),
    "store": Pods(("--set", "serve.args.store_uri=s3://other/store"), "s3://other/store", **IN_CHART),
}


@pytest.mark.parametrize("variant", POD_VARIANTS)
def test_app_settings_in_the_pods_are_the_values(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """serveConfigV2's args and each Ray container's environment, read as Serve's build_app reads them."""
    want = POD_VARIANTS[variant]
    manifests = render(*want.args, release=want.release)
    app = serve_config(manifests)["applications"][0]
    services = {m["metadata"]["name"].rsplit("-", 1)[-1]: m for m in manifests if m["kind"] == "Service"}
    for group, template in pod_templates(manifests).items():
        container = template["spec"]["containers"][0]
        env = resolved_env(container)
        with monkeypatch.context() as patch:
            settings = pod_settings(app["args"], env, patch)
        assert unread_variables(container, settings) == [], (
            f"{group}: CLIPLENS_* variables AppSettings does not read"
        )
        # The store: the app's, and the batch jobs' on the cluster.
        assert settings.store_uri == env["CLIPLENS_STORE"] == want.store
        s3 = settings.s3()
        assert s3 is not None and settings.s3_endpoint == want.s3_endpoint and s3.secure is want.s3_secure
        assert settings.cache_url == want.redis_url
        tls_files = (f"{TLS_DIR}/tls.crt", f"{TLS_DIR}/tls.key") if want.tls else (None, None)
        ports = {p["containerPort"] for p in container["ports"]}
        for name, port in (("features", settings.feature_port), ("attribution", settings.attribution_port)):
            assert (port.tls_cert_file, port.tls_key_file) == tls_files
            assert port.port and [p["port"] for p in services[name]["spec"]["ports"]] == [port.port]
            assert port.port in ports or (name == "features" and group != "head")
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert settings.auth.token_file and str(Path(settings.auth.token_file).parent) in mounts
    overrides = {
        name: {k: v for k, v in d.items() if k != "name"}
        for name, d in deployments(serve_config(manifests)).items()
    }
    for name, setting in BATCHED.items():  # table + overrides take a whole batch
        check_batching(
            name, deployment_options(name, overrides.get(name)), getattr(settings, setting).max_batch_size
        )


def test_an_unknown_variable_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt CLIPLENS_* name is a chart/code disagreement (else the check above would prove little)."""
    extra = json.dumps([{"name": "CLIPLENS_REDIS_ULR", "value": "redis://x:6379/0"}])
    container = pod_templates(render("--set-json", f"extraEnv={extra}"))["head"]["spec"]["containers"][0]
    settings = pod_settings(file_args(), resolved_env(container), monkeypatch)
    assert unread_variables(container, settings) == ["CLIPLENS_REDIS_ULR"]
