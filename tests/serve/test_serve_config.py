"""The shipped Serve configs are valid for Serve, name the app's servicers and build the app's settings;
the production one carries only overrides of the code's defaults (AppSettings, DEPLOYMENT_DEFAULTS)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError
from ray.serve._private.config import DeploymentConfig
from ray.serve.schema import ServeDeploySchema

from cliplens.cli import main
from cliplens.serve.app import DEPLOYMENTS, GRPC_SERVICER_FUNCTIONS
from cliplens.serve.deployment_defaults import (
    BATCHED,
    DEPLOYMENT_DEFAULTS,
    check_batching,
    deployment_options,
)
from cliplens.serve.direct_port import server_credentials
from cliplens.serve.settings import AppSettings, DirectPortSettings

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "serve_config.yaml"
CPU_CONFIG = CONFIG.with_name("serve_config.cpu.yaml")
# The connections the production config leaves to the environment (the Helm chart sets them).
PRODUCTION_ENV = {"CLIPLENS_S3_ENDPOINT": "minio:9000", "CLIPLENS_REDIS_URL": "redis://cache:6379/0"}


def production_app() -> dict[str, Any]:
    (app,) = yaml.safe_load(CONFIG.read_text())["applications"]
    assert isinstance(app, dict)
    return app


@pytest.fixture
def production_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the variables the production config expects (as the chart sets them), none of the caller's."""
    for name in [name for name in os.environ if name.upper().startswith("CLIPLENS_")]:
        monkeypatch.delenv(name)
    for name, value in PRODUCTION_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("production_env")
def test_serve_config_is_valid_and_complete() -> None:
    raw = yaml.safe_load(CONFIG.read_text())
    schema = ServeDeploySchema.model_validate(raw)
    assert schema.grpc_options.port == 9000
    assert raw["grpc_options"]["grpc_servicer_functions"] == GRPC_SERVICER_FUNCTIONS
    app = production_app()
    settings = AppSettings.model_validate(app["args"])
    assert settings.auth.enabled and settings.auth.token_file
    assert settings.store_uri and settings.store_uri.startswith("s3://")
    # The connections come from the environment, not from args.
    assert settings.redis_url == PRODUCTION_ENV["CLIPLENS_REDIS_URL"]
    assert settings.s3_endpoint == PRODUCTION_ENV["CLIPLENS_S3_ENDPOINT"]
    assert settings.feature_port.port and settings.attribution_port.port
    by_name = {d["name"]: d for d in app["deployments"]}
    # Serve autoscales on requests it routes; the gateway's lookups bypass it, so its count is fixed.
    assert set(by_name) == set(DEPLOYMENTS) - {"FeatureGateway"}
    assert all("autoscaling_config" in deployment for deployment in by_name.values())


def _restated(given: dict[str, Any], actual: BaseModel, defaults: dict[str, Any], where: str) -> list[str]:
    """The keys of ``given`` (validated as ``actual``) whose value is the default; nested settings
    are compared key by key with their own defaults."""
    restated = []
    for key, value in given.items():
        if key not in defaults:  # required: no default to restate
            continue
        setting, default = getattr(actual, key), defaults[key]
        if isinstance(setting, BaseModel) and isinstance(value, dict):
            nested = {name: getattr(default, name) for name in type(default).model_fields}
            restated += _restated(value, setting, nested, f"{where}{key}.")
        elif setting == default:
            restated.append(f"{where}{key}")
    return restated


@pytest.mark.unit
@pytest.mark.usefixtures("production_env")
def test_args_are_settings_that_differ_from_the_codes_defaults() -> None:
    args = production_app()["args"]
    assert set(args) <= set(AppSettings.model_fields), "unknown args"
    settings = AppSettings.model_validate(args)
    defaults = {
        name: field.get_default(call_default_factory=True)
        for name, field in AppSettings.model_fields.items()
        if not field.is_required()
    }
    assert _restated(args, settings, defaults, "args.") == [], "restated defaults: remove them from the YAML"
    # Connections belong to the environment (CLIPLENS_*), which the chart sets.
    assert not {"redis_url", "s3_endpoint", "s3_access_key", "s3_secret_key"} & set(args), (
        "connections in args"
    )


@pytest.mark.unit
def test_deployments_override_the_codes_table_only() -> None:
    serve_defaults = DeploymentConfig()
    for entry in production_app()["deployments"]:
        name, given = entry["name"], {k: v for k, v in entry.items() if k != "name"}
        assert name in DEPLOYMENT_DEFAULTS, f"{name}: not in DEPLOYMENT_DEFAULTS"
        table = DEPLOYMENT_DEFAULTS[name].options()
        for option, value in given.items():
            default = table[option] if option in table else getattr(serve_defaults, option, None)
            assert value != default, f"{name}.{option}: restates the default {default!r}"
        # Serve replaces the code's ray_actor_options wholesale: an override must give both.
        if "ray_actor_options" in given:
            assert {"num_cpus", "num_gpus"} <= set(given["ray_actor_options"]), (
                f"{name}: give num_cpus and num_gpus"
            )
    gpus = {
        e["name"]: e.get("ray_actor_options", {}).get("num_gpus", 0) for e in production_app()["deployments"]
    }
    assert gpus["Encoder"] > 0 and gpus["Attributor"] > 0  # the production config's point


@pytest.mark.unit
@pytest.mark.usefixtures("production_env")
def test_batched_deployments_take_a_whole_batch() -> None:
    """Table + YAML override: a batched deployment's max_ongoing_requests is at least its batch size."""
    app = production_app()
    settings = AppSettings.model_validate(app["args"])
    overrides = {e["name"]: {k: v for k, v in e.items() if k != "name"} for e in app["deployments"]}
    for name, setting in BATCHED.items():
        check_batching(
            name, deployment_options(name, overrides.get(name)), getattr(settings, setting).max_batch_size
        )


def test_cpu_config_is_what_cliplens_serve_prints_and_fits_two_cores(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "--print-config"]) == 0
    assert capsys.readouterr().out == CPU_CONFIG.read_text(), "regenerate: cliplens serve --print-config"
    raw = yaml.safe_load(CPU_CONFIG.read_text())
    ServeDeploySchema.model_validate(raw)
    (app,) = raw["applications"]
    settings = AppSettings.model_validate(app["args"])
    assert settings.store_uri is None and settings.redis_url is None  # the user's defaults, read in replicas
    options = [d["ray_actor_options"] for d in app["deployments"]]
    assert {d["name"] for d in app["deployments"]} == set(DEPLOYMENTS)
    assert all(o["num_gpus"] == 0 for o in options) and sum(o["num_cpus"] for o in options) <= 2


def test_unknown_arguments_are_refused() -> None:
    with pytest.raises(ValidationError, match="max_batch"):
        AppSettings.model_validate({"models": ["demo"], "store_uri": "/s", "max_batch": 3})


def test_direct_port_tls_needs_both_files_and_names_an_unreadable_one(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="tls_cert_file and tls_key_file"):
        DirectPortSettings(port=9002, tls_cert_file="/etc/cert.pem")
    cert = tmp_path / "cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    port = DirectPortSettings(port=9002, tls_cert_file=str(cert), tls_key_file=str(tmp_path / "missing.key"))
    with pytest.raises(RuntimeError, match=r"tls_key_file: cannot read .*missing\.key"):
        server_credentials(port)
    assert server_credentials(DirectPortSettings(port=9002)) is None
