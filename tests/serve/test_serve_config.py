"""The shipped Serve config is valid for Serve, names the app's servicers and builds the app's settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from ray.serve.schema import ServeDeploySchema

from cliplens.cli import main
from cliplens.serve.app import DEPLOYMENTS, GRPC_SERVICER_FUNCTIONS
from cliplens.serve.direct_port import server_credentials
from cliplens.serve.settings import AppSettings, DirectPortSettings

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "serve_config.yaml"
CPU_CONFIG = CONFIG.with_name("serve_config.cpu.yaml")


def test_serve_config_is_valid_and_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPLENS_S3_ENDPOINT", "minio:9000")  # as the chart sets it
    raw = yaml.safe_load(CONFIG.read_text())
    schema = ServeDeploySchema.model_validate(raw)
    assert schema.grpc_options.port == 9000
    assert raw["grpc_options"]["grpc_servicer_functions"] == GRPC_SERVICER_FUNCTIONS
    (app,) = raw["applications"]
    settings = AppSettings.model_validate(app["args"])
    assert settings.auth.enabled and settings.encoder_batch.max_batch_size == 32
    by_name = {d["name"]: d for d in app["deployments"]}
    assert set(by_name) == set(DEPLOYMENTS)
    for deployment in by_name.values():
        assert {"num_cpus", "num_gpus"} <= set(deployment["ray_actor_options"])
    # Serve autoscales on requests it routes; the gateway's lookups bypass it, so its count is fixed.
    assert all("autoscaling_config" in by_name[name] for name in set(DEPLOYMENTS) - {"FeatureGateway"})
    assert by_name["FeatureGateway"]["num_replicas"] >= 1 and settings.feature_port.port == 9001
    assert by_name["Encoder"]["max_ongoing_requests"] >= settings.encoder_batch.max_batch_size


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
