"""Serve's own direct ingress versus cliplens's hand-made direct ports: latency, and a killed replica.

Ray Serve 2.60 can let each ingress replica serve gRPC itself (``RAY_SERVE_ENABLE_DIRECT_INGRESS=1``)
on a port the controller allocates from [40000, 41000) per node, and can put HAProxy in front of those
ports on the fixed gRPC port (``RAY_SERVE_ENABLE_HA_PROXY=1``, which implies direct ingress), routing by
the ``application`` metadata. cliplens today serves FeatureService on the FeatureGateway's hand-made
port (9001) and AttributionService on each Attributor's (9002): a plain grpc.aio server inside the
replica (``DirectPortHost``). One Ray session runs, on one machine:

- the cliplens app as ``start_app`` deploys it (hand-made ports on, CliplensIngress behind the front);
- app ``attribution``: the Attributor as the ingress of an app of its own (the Attributor class with
  one method per AttributionService rpc, ``with_rpc_methods``, over an ``AttributionApi`` whose backend
  is the replica itself: the same code path as its hand-made port);
- app ``features``: a FeatureService ingress (``FeatureApi`` over Redis; labels and search go to the
  cliplens app's Attributor through a handle), ``--feature-replicas`` replicas (2: the hand-made
  TopActivations path has two servers too, the FeatureGateway and the CliplensIngress behind the front).

Paths measured (AttributeLatents, TopActivations): the hand-made port; Serve's direct-ingress port of
the cliplens app (CliplensIngress: TopActivations answered there from Redis, AttributeLatents one handle
hop to the Attributor) and of the app of its own; and the front (``--front haproxy``: HAProxy on the
fixed port, routing to those ports; ``--front proxy``: Serve's Python gRPC proxy on the head node, two
actor hops) to each app. Load: ghz (``make ghz``) at a fixed rate, every path in turn in each of
``--rounds`` rounds, pooled: TopActivations at 100 req/s, AttributeLatents at the highest of 100, 50,
25, 10 req/s that the hand-made port sustains in a probe. Raw: the in-process forward + backward of
``serve_attribution.py``, at the driver's torch threads and at one, in turn with the paths; the
AttributeLatents goal (p50 <= 1.5x raw) uses the faster.

Kills: for each replica that serves a path (Attributor, FeatureGateway, CliplensIngress,
AttributorIngress, FeatureIngress), clients send at ``--kill-rate`` calls/s each (the cliplens
``Client`` with its default retries, ``--call-timeout`` deadline) while the replica is ``ray.kill``-ed:
a single-target client on the path's address, a client that fails over ``[path, front]``, and for the
direct-ingress replicas a single-target client on the front. Lost calls, the time from the kill until
the client's calls succeed again, and when a fresh probe first gets an answer from the replacement
(for direct ingress: at the port Serve then publishes).

Writes ``benchmarks/results/direct_ingress.{md,json}``, with a decision: replace the hand-made ports
only if the own apps through a stable address meet both latency goals and lose no more calls on a kill.
Run: ``make ghz && .venv/bin/python benchmarks/direct_ingress.py`` (about 10 minutes on 2 shared cores;
``--quick``: a smoke run of about 4).
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FRONT_ENV = {
    # HAProxy on the fixed gRPC port in front of the replicas' direct-ingress ports (implies direct ingress).
    "haproxy": {"RAY_SERVE_ENABLE_HA_PROXY": "1"},
    # Direct ingress with Serve's Python gRPC proxy kept on the head node only.
    "proxy": {},
}
COMMON_ENV = {
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",  # as serve_common (and so the earlier serve benchmarks) sets it
    "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
    # A graceful stop of a direct-ingress replica waits at least this long (default 30 s) so that load
    # balancers can deregister it; only serve.shutdown at the end meets it here (ray.kill skips it).
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
}
MAIN_APP, ATTRIBUTION_APP, FEATURES_APP = "cliplens", "attribution", "features"
TEXT = "a photo of a cat"
TA_RATE = 100
AL_RATES = (100, 50, 25, 10)  # AttributeLatents: the first the hand-made port sustains
QUEUE_FREE = 2.0  # p50 / raw p50 below which a rate counts as sustained (no queue)
SMALL = {"ray_actor_options": {"num_cpus": 0.25, "num_gpus": 0}}
ATTRIBUTOR_CPUS = {"ray_actor_options": {"num_cpus": 1, "num_gpus": 0}}  # as serve_attribution.py


@dataclass(frozen=True)
class PathSpec:
    """One way in: ``rpc`` ("AttributeLatents" / "TopActivations") to ``address`` with ``app`` metadata."""

    key: str
    label: str
    rpc: str
    address: str
    app: str


@dataclass(frozen=True)
class ClientSpec:
    label: str
    rpc: str
    targets: tuple[str, ...]
    app: str
    path_key: str  # the path of the table whose row this client's figures go to
    kind: str  # "single", "failover" or "front"


@dataclass(frozen=True)
class KillSpec:
    """Kill the replica of ``deployment`` in ``app`` that serves the first address ``probe`` lists (the
    published direct-ingress ports, or the fixed hand-made port); after the kill the replacement is
    the first address it lists that it did not list before (the same for a fixed port), asked
    ``probe_rpc``."""

    label: str
    app: str
    deployment: str
    clients: tuple[ClientSpec, ...]
    probe_rpc: str
    probe_app: str
    probe: Callable[[], list[str]] = field(compare=False, repr=False)
    fixed: bool = False


@dataclass
class Outcome:
    sent: float  # seconds after the kill (negative: before)
    done: float
    ok: bool
    code: str


# --------------------------------------------------------------------------------------------------
# The session: Redis, the demo catalogue, Ray + Serve with the cliplens app and the two extra apps.


@dataclass(frozen=True)
class Session:
    front: str  # host:port of the fixed gRPC port (HAProxy or Serve's proxy)
    feature_port: str  # hand-made
    attribution_port: str  # hand-made
    index: Any  # DemoIndex
    settings: Any  # AppSettings of the cliplens app


def extra_deployments() -> tuple[Any, Any]:
    """(AttributorIngress, FeatureIngress): the Attributor and the feature lookups as ingresses of
    Serve apps of their own. Built after the environment is set (they import Serve); defined here, in
    the benchmark, and pickled by value with it."""
    from ray import serve

    from cliplens.serve.attribution_api import AttributionApi
    from cliplens.serve.attributor import Attributor
    from cliplens.serve.auth import TokenAuth
    from cliplens.serve.backends import remote
    from cliplens.serve.catalog import Catalog
    from cliplens.serve.feature_api import FeatureApi
    from cliplens.serve.feature_lookups import FeatureLookups
    from cliplens.serve.request_checks import RequestImages
    from cliplens.serve.transports import with_rpc_methods

    @serve.deployment(name="AttributorIngress")
    @with_rpc_methods([AttributionApi.service])
    class AttributorIngress(Attributor.func_or_class):  # type: ignore[name-defined]
        """The Attributor, answering AttributionService through Serve (settings without a hand-made port)."""

        async def __init__(self, settings: Any) -> None:  # type: ignore[misc]
            await super().__init__(settings)
            images = RequestImages(settings.limits, settings.image_store())
            api = AttributionApi(settings, self.catalog, images, self)
            self.apis = {api.service.full_name: api}
            self.auth = TokenAuth(settings.auth)

    @serve.deployment(name="FeatureIngress")
    @with_rpc_methods([FeatureApi.service])
    class FeatureIngress:
        """FeatureService through Serve: lookups from Redis here, labels and search from ``attributor_app``."""

        def __init__(self, settings: Any, attributor_app: str) -> None:
            store = settings.store()
            lookups = FeatureLookups(store, settings.cache_url, settings.redis_timeout_s)
            attributor = remote(
                serve.get_deployment_handle("Attributor", attributor_app), ("labels", "search", "neighbours")
            )
            api = FeatureApi(settings, Catalog(settings, store), lookups, attributor)
            self.apis = {api.service.full_name: api}
            self.auth = TokenAuth(settings.auth)

    return AttributorIngress, FeatureIngress


@contextmanager
def running_session(feature_replicas: int) -> Iterator[Session]:
    """``serve_common.demo_stack`` with the app started, and two extra apps deployed with its settings
    (without hand-made ports)."""
    from ray import serve

    from cliplens.serve.deployment_defaults import deployment_options
    from cliplens.serve.local_app import start_app
    from cliplens.serve.settings import DirectPortSettings
    from serve_common import demo_stack

    with demo_stack(["demo"]) as stack:
        settings = stack.settings
        no_ports = settings.model_copy(
            update={"feature_port": DirectPortSettings(), "attribution_port": DirectPortSettings()}
        )
        options: dict[str, dict[str, Any]] = {
            name: SMALL for name in ("CliplensIngress", "Encoder", "SaeRunner", "FeatureGateway")
        }
        options["Attributor"] = ATTRIBUTOR_CPUS
        start_app(settings, options, stack.ports)
        attributor_ingress, feature_ingress = extra_deployments()
        serve.run(
            attributor_ingress.options(**deployment_options("Attributor", ATTRIBUTOR_CPUS)).bind(no_ports),
            name=ATTRIBUTION_APP,
            route_prefix=f"/{ATTRIBUTION_APP}",
        )
        serve.run(
            feature_ingress.options(
                num_replicas=feature_replicas, **deployment_options("CliplensIngress", SMALL)
            ).bind(no_ports, MAIN_APP),
            name=FEATURES_APP,
            route_prefix=f"/{FEATURES_APP}",
        )
        yield Session(
            f"127.0.0.1:{stack.ports.grpc}",
            f"127.0.0.1:{settings.feature_port.port}",
            f"127.0.0.1:{settings.attribution_port.port}",
            stack.index,
            settings,
        )


def replica_grpc_targets(app: str) -> dict[str, str]:
    """Address -> actor name of ``app``'s ingress replicas' direct-ingress gRPC ports, lowest port first,
    as Serve's controller publishes them (``get_target_groups``: what HAProxy is configured from; the
    dashboard's Serve details list the same); empty while none runs. Replicas bind all interfaces."""
    import ray
    from ray import serve

    client = serve.context._get_global_client()
    assert client is not None, "Serve is not running"
    controller = client._controller
    groups = ray.get(controller.get_target_groups.remote(app, True))
    targets = sorted(
        (t.port, t.name)
        for g in groups
        if g.protocol == "gRPC" and g.app_name == app
        for t in g.targets
        if t.name.startswith("SERVE_REPLICA::")
    )
    return {f"127.0.0.1:{port}": name for port, name in targets}


def replica_grpc_address(app: str) -> str | None:
    """The first of :func:`replica_grpc_targets`, or ``None``."""
    return next(iter(replica_grpc_targets(app)), None)


def listener_pid(address: str) -> int | None:
    """The process listening on ``address``'s port on this machine."""
    import psutil

    port = int(address.rsplit(":", 1)[1])
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            return conn.pid
    return None


def gone(pid: int | None) -> bool:
    import psutil

    try:
        return pid is None or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_for(what: str, check: Callable[[], Any], timeout_s: float, every_s: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception:  # not up yet
            value = None
        if value:
            return value
        time.sleep(every_s)
    raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")


# --------------------------------------------------------------------------------------------------
# Calls


def one_call(rpc: str, targets: tuple[str, ...], app: str, jpeg: bytes, latent: int, **client: Any) -> Any:
    """A client of ``targets`` and a function making one ``rpc`` call with it."""
    from cliplens.demo.catalogue import FINAL_SAE
    from cliplens_client import Client

    c = Client(targets[0] if len(targets) == 1 else list(targets), app=app, **client)
    if rpc == "AttributeLatents":
        return c, lambda: c.attribute_latents(FINAL_SAE, jpeg, [TEXT], top_n=10)
    return c, lambda: c.top_activations(FINAL_SAE, latent, k=16)


def answers(rpc: str, address: str, app: str, jpeg: bytes, latent: int) -> bool:
    """One call on a fresh channel, no retries, 2 s."""
    from cliplens_client import RetryPolicy

    c, call = one_call(rpc, (address,), app, jpeg, latent, timeout=2.0, retry=RetryPolicy(max_attempts=1))
    try:
        call()
        return True
    except Exception:
        return False
    finally:
        c.close()


def ghz_call(path: PathSpec, jpeg: bytes, latents: list[int]) -> list[str]:
    """ghz arguments of ``path``'s rpc: serve_features' TopActivations call (every latent in turn), or
    one AttributeLatents request; the ``application`` metadata of the path's app."""
    from cliplens.demo.catalogue import FINAL_SAE
    from serve_features import PROTOS, top_activations_call

    if path.rpc == "TopActivations":
        call = top_activations_call(FINAL_SAE, latents)
    else:
        request = {
            "sae_id": FINAL_SAE,
            "image": {"data": base64.b64encode(jpeg).decode()},
            "texts": [TEXT],
            "top_n": 10,
        }
        call = ["--proto", str(PROTOS / "cliplens" / "v1" / "attribution.proto"), "-i", str(PROTOS),
                "--call", "cliplens.v1.AttributionService.AttributeLatents", "-d", json.dumps(request),
                "-m", "{}"]  # fmt: skip
    call[call.index("-m") + 1] = json.dumps({"application": path.app})
    return call


def pooled(steps: list[dict[str, Any]]) -> dict[str, Any]:
    from serve_common import percentile

    latencies = [ms for step in steps for ms in step["latencies_ms"]]
    return {
        "n": len(latencies),
        "p50_ms": percentile(latencies, 50) if latencies else float("nan"),
        "p99_ms": percentile(latencies, 99) if latencies else float("nan"),
        "round_p99_ms": [step["p99_ms"] for step in steps],
        "achieved_rps": statistics.fmean(step["achieved_rps"] for step in steps),
        "errors": sum(step["errors"] for step in steps),
    }


def attribution_rate(
    path: PathSpec, jpeg: bytes, rates: list[float], seconds: float, raw_p50_ms: float
) -> tuple[float, list[dict]]:
    """The highest of ``rates`` that ``path`` (the hand-made port) sustains, trying them from the top:
    it keeps up (serve_features' ``saturated``) without a queue (p50 at most ``QUEUE_FREE`` times the
    raw forward + backward; near saturation p50 jumps to 100+ ms on these shared cores)."""
    from serve_features import ghz, saturated

    tried = []
    for rate in sorted(rates, reverse=True):
        step = ghz(path.address, ghz_call(path, jpeg, []), rate, seconds)
        tried.append({k: v for k, v in step.items() if k != "latencies_ms"})
        if not saturated(step) and step["p50_ms"] <= QUEUE_FREE * raw_p50_ms:
            return rate, tried
    return min(rates), tried


# --------------------------------------------------------------------------------------------------
# Kills


class Sender:
    """Calls at a fixed rate (open loop) from a pool of threads; each call's outcome relative to the kill."""

    def __init__(self, spec: ClientSpec, rate: float, call_timeout: float, jpeg: bytes, latent: int) -> None:
        self.spec = spec
        self.rate = rate
        self.client, self.call = one_call(
            spec.rpc, spec.targets, spec.app, jpeg, latent, timeout=call_timeout
        )
        self.outcomes: list[Outcome] = []
        self.kill_time = float("inf")
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(64, thread_name_prefix=f"send-{spec.kind}")
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _one(self, sent: float) -> None:
        code = "OK"
        try:
            self.call()
        except Exception as error:  # cliplens RpcError subclasses
            code = getattr(error, "code", None) or type(error).__name__
            code = getattr(code, "name", str(code))
        done = time.monotonic()
        with self._lock:
            self.outcomes.append(Outcome(sent, done, code == "OK", code))

    def _run(self) -> None:
        start = time.monotonic()
        i = 0
        while not self._stop.is_set():
            due = start + i / self.rate
            time.sleep(max(0.0, due - time.monotonic()))
            self._pool.submit(self._one, due)
            i += 1

    def stop_sending(self) -> None:
        self._stop.set()

    def finish(self) -> None:
        """Wait for the calls in flight, then close the client."""
        self._thread.join()
        self._pool.shutdown(wait=True)
        self.client.close()

    def summary(self, kill_time: float, window_s: float) -> dict[str, Any]:
        """Calls lost (failed) and the time from the kill until calls succeed again: the send time of
        the first answered call after the last failed one (0 when none failed; ``None`` when the last
        calls still failed)."""
        outcomes = sorted(self.outcomes, key=lambda o: o.sent)
        for o in outcomes:
            o.sent -= kill_time
            o.done -= kill_time
        outcomes = [o for o in outcomes if o.sent < window_s]  # sent before the sending stopped
        after = [o for o in outcomes if o.sent >= 0]
        failed = [o for o in outcomes if not o.ok]
        recovered: float | None = 0.0
        if failed:
            last = max(o.sent for o in failed)
            later = [o.sent for o in after if o.ok and o.sent > last]
            recovered = min(later) if later else None
        answered = [(o.done - o.sent) * 1000 for o in after if o.ok]
        codes: dict[str, int] = {}
        for o in failed:
            codes[o.code] = codes.get(o.code, 0) + 1
        return {
            "label": self.spec.label,
            "kind": self.spec.kind,
            "path": self.spec.path_key,
            "targets": list(self.spec.targets),
            "rate": self.rate,
            "calls_after_kill": len(after),
            "lost": len(failed),
            "failed_codes": codes,
            "recovered_after_s": recovered,
            "window_s": window_s,
            "max_answered_ms_after_kill": max(answered) if answered else None,
        }


def replicas(app: str, deployment: str) -> list[dict[str, str]]:
    import ray

    prefix = f"SERVE_REPLICA::{app}#{deployment}#"
    return [a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)]


def kill_replica(app: str, deployment: str, address: str) -> tuple[str, float, float]:
    """``ray.kill`` the replica of ``deployment`` serving ``address`` (the direct-ingress replica
    published there, else the deployment's only replica): its name, the time of the kill and seconds
    until its process was gone (Ray releases the name before the process exits)."""
    import ray

    actors = {a["name"]: a for a in replicas(app, deployment)}
    name = replica_grpc_targets(app).get(address)
    if name not in actors:
        [name] = actors
    pid = listener_pid(address)
    killed_at = time.monotonic()
    ray.kill(ray.get_actor(name, namespace=actors[name]["namespace"]), no_restart=True)
    wait_for(f"{name} (pid {pid}) gone", lambda: gone(pid), 30, 0.02)
    return name, killed_at, time.monotonic() - killed_at


def run_kill(spec: KillSpec, args: argparse.Namespace, jpeg: bytes, latent: int) -> dict[str, Any]:
    from ray import serve

    listed = spec.probe()
    if not listed:
        raise RuntimeError(f"{spec.label}: no address to kill")
    before = listed[0]
    senders = [Sender(c, args.kill_rate, args.call_timeout, jpeg, latent) for c in spec.clients]
    for sender in senders:
        sender.start()
    time.sleep(args.kill_lead_s)
    killed, kill_time, died_after = kill_replica(spec.app, spec.deployment, before)
    replacement: dict[str, Any] = {"address": None, "answers_after_s": None}

    def probe() -> None:  # a fresh channel each time, at the address Serve publishes now
        while time.monotonic() - kill_time < args.kill_window_s + 60:
            new = [a for a in spec.probe() if spec.fixed or a not in listed]
            address = new[0] if new else None
            if address and answers(spec.probe_rpc, address, spec.probe_app, jpeg, latent):
                replacement.update(address=address, answers_after_s=time.monotonic() - kill_time)
                return
            time.sleep(0.1)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    time.sleep(max(0.0, kill_time + args.kill_window_s - time.monotonic()))
    for sender in senders:
        sender.stop_sending()
    for sender in senders:
        sender.finish()
    prober.join()
    wait_for(
        f"{spec.app} running again",
        lambda: serve.status().applications[spec.app].status.value == "RUNNING",
        timeout_s=90,
    )
    return {
        "label": spec.label,
        "killed": killed,
        "process_gone_after_s": died_after,
        "address_before": before,
        "replacement_address": replacement["address"],
        "replacement_answers_after_s": replacement["answers_after_s"],
        "clients": [s.summary(kill_time, args.kill_window_s) for s in senders],
    }


# --------------------------------------------------------------------------------------------------
# The run


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from cliplens.demo.catalogue import FINAL_SAE
    from serve_attribution import raw_forward_backward
    from serve_common import cpu_times, steal_share, summary_ms
    from serve_features import GHZ, ghz

    if not GHZ.is_file():
        raise SystemExit(f"{GHZ} is missing: run `make ghz`")
    front = "HAProxy" if args.front == "haproxy" else "Serve proxy"
    started = time.monotonic()
    with running_session(args.feature_replicas) as s:
        jpeg = s.index.jpegs[0]
        latents = sorted({row.latent for row in s.index.topk[FINAL_SAE]})
        latent = s.index.active_latent
        di = {
            app: wait_for(f"{app} port", functools.partial(replica_grpc_address, app), 60)
            for app in (MAIN_APP, ATTRIBUTION_APP, FEATURES_APP)
        }
        paths = [
            PathSpec("al_hand", "hand-made port (Attributor, `attribution_port`)", "AttributeLatents", s.attribution_port, MAIN_APP),
            PathSpec("al_di_main", "Serve direct ingress, cliplens app (CliplensIngress -> Attributor)", "AttributeLatents", di[MAIN_APP], MAIN_APP),
            PathSpec("al_di_own", "Serve direct ingress, app `attribution` (AttributorIngress)", "AttributeLatents", di[ATTRIBUTION_APP], ATTRIBUTION_APP),
            PathSpec("al_front_main", f"{front} on the fixed port -> cliplens app", "AttributeLatents", s.front, MAIN_APP),
            PathSpec("al_front_own", f"{front} on the fixed port -> app `attribution`", "AttributeLatents", s.front, ATTRIBUTION_APP),
            PathSpec("ta_hand", "hand-made port (FeatureGateway, `feature_port`)", "TopActivations", s.feature_port, MAIN_APP),
            PathSpec("ta_di_main", "Serve direct ingress, cliplens app (CliplensIngress, Redis)", "TopActivations", di[MAIN_APP], MAIN_APP),
            PathSpec("ta_di_own", "Serve direct ingress, app `features` (FeatureIngress)", "TopActivations", di[FEATURES_APP], FEATURES_APP),
            PathSpec("ta_front_main", f"{front} on the fixed port -> cliplens app", "TopActivations", s.front, MAIN_APP),
            PathSpec("ta_front_own", f"{front} on the fixed port -> app `features`", "TopActivations", s.front, FEATURES_APP),
        ]  # fmt: skip
        for path in paths:  # the front learns the new apps' ports asynchronously
            check = functools.partial(answers, path.rpc, path.address, path.app, jpeg, latent)
            wait_for(f"{path.label} answers", check, 90)
        up_s = time.monotonic() - started
        time.sleep(args.settle_s)
        raw_per_round = max(10, args.raw_runs // args.rounds)
        threads = torch.get_num_threads()
        raw: dict[int, list[float]] = {threads: [], 1: []}

        def raw_pass() -> None:
            """The raw pass at the driver's torch threads and at one (as a replica runs), in the
            driver while the replicas idle; the goal's baseline is the faster of the two."""
            for n in raw:
                torch.set_num_threads(n)
                try:
                    raw[n] += raw_forward_backward(jpeg, raw_per_round)
                finally:
                    torch.set_num_threads(threads)

        def raw_p50() -> float:
            return min(summary_ms(times)["p50_ms"] for times in raw.values())

        raw_pass()  # for the probe; pooled with the rounds' runs
        al_rate, probe_steps = (
            (args.attribution_rate, [])
            if args.attribution_rate
            else attribution_rate(paths[0], jpeg, list(AL_RATES), args.probe_seconds, raw_p50())
        )
        rounds: dict[str, list[dict[str, Any]]] = {p.key: [] for p in paths}
        load_before = os.getloadavg()
        cpu_before = cpu_times()
        for i in range(args.rounds):
            if i:  # the raw pass in turn with the paths, in the driver (the replicas idle)
                raw_pass()
            for path in paths:
                rate = al_rate if path.rpc == "AttributeLatents" else TA_RATE
                rounds[path.key].append(
                    ghz(path.address, ghz_call(path, jpeg, latents), rate, args.round_seconds)
                )
        steal = steal_share(cpu_before, cpu_times())
        load_after_rounds = os.getloadavg()

        def fixed(address: str) -> Callable[[], list[str]]:
            return lambda: [address]

        def published(app: str) -> Callable[[], list[str]]:
            return lambda: list(replica_grpc_targets(app))

        def clients(
            rpc: str, path_key: str, front_key: str, address: str, app: str, with_front: bool
        ) -> list[ClientSpec]:
            specs = [
                ClientSpec(f"{rpc}: [{address}]", rpc, (address,), app, path_key, "single"),
                ClientSpec(
                    f"{rpc}: [{address}, {s.front}]", rpc, (address, s.front), app, path_key, "failover"
                ),
            ]
            if with_front:
                specs.append(
                    ClientSpec(f"{rpc}: [{s.front}] ({app})", rpc, (s.front,), app, front_key, "front")
                )
            return specs

        kills = [
            KillSpec("Attributor (hand-made port)", MAIN_APP, "Attributor",
                     tuple(clients("AttributeLatents", "al_hand", "", s.attribution_port, MAIN_APP, False)),
                     "AttributeLatents", MAIN_APP, fixed(s.attribution_port), fixed=True),
            KillSpec("FeatureGateway (hand-made port)", MAIN_APP, "FeatureGateway",
                     tuple(clients("TopActivations", "ta_hand", "", s.feature_port, MAIN_APP, False)),
                     "TopActivations", MAIN_APP, fixed(s.feature_port), fixed=True),
            KillSpec("CliplensIngress (direct ingress, cliplens app)", MAIN_APP, "CliplensIngress",
                     tuple(clients("AttributeLatents", "al_di_main", "al_front_main", di[MAIN_APP], MAIN_APP, True)
                           + clients("TopActivations", "ta_di_main", "ta_front_main", di[MAIN_APP], MAIN_APP, True)),
                     "TopActivations", MAIN_APP, published(MAIN_APP)),
            KillSpec("AttributorIngress (direct ingress, app attribution)", ATTRIBUTION_APP, "AttributorIngress",
                     tuple(clients("AttributeLatents", "al_di_own", "al_front_own", di[ATTRIBUTION_APP], ATTRIBUTION_APP, True)),
                     "AttributeLatents", ATTRIBUTION_APP, published(ATTRIBUTION_APP)),
            KillSpec("FeatureIngress (direct ingress, app features)", FEATURES_APP, "FeatureIngress",
                     tuple(clients("TopActivations", "ta_di_own", "ta_front_own", di[FEATURES_APP], FEATURES_APP, True)),
                     "TopActivations", FEATURES_APP, published(FEATURES_APP)),
        ]  # fmt: skip
        kill_results = [run_kill(k, args, jpeg, latent) for k in kills]
    load_end = os.getloadavg()
    return {
        "front": args.front,
        "front_label": front,
        "startup_s": up_s,
        "total_s": time.monotonic() - started,
        "attribution_rate": al_rate,
        "attribution_rate_probe": probe_steps,
        "ta_rate": TA_RATE,
        "paths": [asdict(p) for p in paths],
        "latency": {key: pooled(steps) for key, steps in rounds.items()},
        "rounds": {
            key: [{k: v for k, v in st.items() if k != "latencies_ms"} for st in steps]
            for key, steps in rounds.items()
        },
        "raw_forward_backward": {f"{n}_threads": summary_ms(times) for n, times in raw.items()},
        "raw_p50_ms": raw_p50(),
        "cpu_steal_during_rounds": steal,
        "load_average": {"before_rounds": load_before, "after_rounds": load_after_rounds, "end": load_end},
        "kills": kill_results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--front", choices=sorted(FRONT_ENV), default="haproxy", help="what serves the fixed gRPC port"
    )
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds of every path")
    parser.add_argument("--round-seconds", type=float, default=6.0, help="seconds of each path in a round")
    parser.add_argument(
        "--attribution-rate", type=float, help="AttributeLatents req/s (default: probe 100, 50, 25, 10)"
    )
    parser.add_argument("--probe-seconds", type=float, default=4.0)
    parser.add_argument("--raw-runs", type=int, default=200)
    parser.add_argument(
        "--feature-replicas",
        type=int,
        default=2,
        help="replicas of the features app (the hand-made TopActivations path has two servers too: "
        "the FeatureGateway and, behind the fixed port, the CliplensIngress)",
    )
    parser.add_argument("--settle-s", type=float, default=15.0, help="idle time once every path answers")
    parser.add_argument("--kill-rate", type=float, default=20.0, help="calls/s of each client during a kill")
    parser.add_argument(
        "--call-timeout", type=float, default=2.0, help="deadline of each call (retries included)"
    )
    parser.add_argument("--kill-lead-s", type=float, default=2.0, help="sending before the kill")
    parser.add_argument("--kill-window-s", type=float, default=30.0, help="sending after the kill")
    parser.add_argument(
        "--quick", action="store_true", help="a short smoke run (1 round of 2 s, 20 s kill windows)"
    )
    parser.add_argument("--out", default="direct_ingress", help="results name under benchmarks/results")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.round_seconds, args.raw_runs, args.settle_s = 1, 2.0, 30, 2.0
        args.probe_seconds, args.kill_window_s = 2.0, 20.0
    os.environ.update({**COMMON_ENV, **FRONT_ENV[args.front]})  # before Ray is imported or started
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    command = ".venv/bin/python benchmarks/direct_ingress.py " + " ".join(sys.argv[1:])
    results = measure(args)
    results["command"] = command.strip()
    results["round_seconds"], results["call_timeout"] = args.round_seconds, args.call_timeout
    results["feature_replicas"], results["probe_seconds"] = args.feature_replicas, args.probe_seconds
    results["env"] = {**COMMON_ENV, **FRONT_ENV[args.front]}
    root = Path(__file__).resolve().parents[1]
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    results["commit"] = head.stdout.strip() or "unknown"
    results["machine"] = {"cpus": os.cpu_count()}
    from serve_common import write_results

    write_results(args.out, results, markdown(results))


def fmt_s(value: float | None, window: float) -> str:
    return (
        f"not within {window:.0f} s"
        if value is None
        else ("0 (none lost)" if value == 0 else f"{value:.1f} s")
    )


def kill_figures(r: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """path key -> client kind -> that client's kill summary."""
    figures: dict[str, dict[str, dict[str, Any]]] = {}
    for kill in r["kills"]:
        for c in kill["clients"]:
            figures.setdefault(c["path"], {})["single" if c["kind"] == "front" else c["kind"]] = c
    return figures


def decision(r: dict[str, Any]) -> tuple[bool, list[str]]:
    """Replace the hand-made ports only if Serve's way meets both latency goals on a stable address
    and loses no more calls on a kill than the hand-made ports with failover."""
    lat, raw_p50 = r["latency"], r["raw_p50_ms"]
    figures = kill_figures(r)
    al_ratio = lat["al_front_own"]["p50_ms"] / raw_p50
    ta_p99 = lat["ta_front_own"]["p99_ms"]
    stable = r["front"] == "haproxy"
    moved = [
        k
        for k in r["kills"]
        if "direct ingress" in k["label"] and k["replacement_address"] != k["address_before"]
    ]
    lost = {
        key: (figures[key].get("single", {}).get("lost"), figures[hand].get("failover", {}).get("lost"))
        for key, hand in (("al_front_own", "al_hand"), ("ta_front_own", "ta_hand"))
    }
    rate, window = r["kills"][0]["clients"][0]["rate"], r["kills"][0]["clients"][0]["window_s"]
    reasons = [
        f"AttributeLatents through {r['front_label']} to the Attributor's own app: p50 {lat['al_front_own']['p50_ms']:.1f} ms"
        f" = **{al_ratio:.2f}x** the raw forward + backward ({raw_p50:.1f} ms, the faster thread count; "
        "goal <= 1.5x: "
        f"{'met' if al_ratio <= 1.5 else 'NOT met'}); the hand-made port: "
        f"{lat['al_hand']['p50_ms'] / raw_p50:.2f}x.",
        f"TopActivations through {r['front_label']} to the features app: p99 **{ta_p99:.1f} ms** at {r['ta_rate']} req/s "
        f"(goal <= 10 ms: {'met' if ta_p99 <= 10 else 'NOT met'}); the hand-made port: {lat['ta_hand']['p99_ms']:.1f} ms.",
        "Stable address: the direct-ingress ports are not one (Serve allocates them; "
        + (
            f"{len(moved)} of {sum('direct ingress' in k['label'] for k in r['kills'])} killed ingress replicas came back on another port"
            if moved
            else "the replacements came back on the same ports here"
        )
        + "); "
        + (
            "HAProxy on the fixed port is."
            if stable
            else "Serve's Python proxy on the fixed port is, but with its two hops."
        ),
        f"Calls lost on a kill ({rate:.0f} calls/s for {window:.0f} s; one Attributor replica either way, "
        f"{r['feature_replicas']} features-app replicas vs the FeatureGateway + the CliplensIngress behind the "
        f"fixed port): AttributeLatents {lost['al_front_own'][0]} through {r['front_label']} vs "
        f"{lost['al_front_own'][1]} with the hand-made port failing over to the fixed port; TopActivations "
        f"{lost['ta_front_own'][0]} vs {lost['ta_front_own'][1]} (allowed: the hand-made figure + 20% + one "
        "second of calls, the noise of a replica's restart time here).",
    ]
    replace = (
        al_ratio <= 1.5
        and ta_p99 <= 10
        and stable
        and all(a is not None and b is not None and a <= 1.2 * b + rate for a, b in lost.values())
    )
    return replace, reasons


def markdown(r: dict[str, Any]) -> str:
    lat, raw_p50 = r["latency"], r["raw_p50_ms"]
    figures = kill_figures(r)
    load = r["load_average"]
    window = r["kills"][0]["clients"][0]["window_s"]
    probe = r["attribution_rate_probe"]
    rate_note = f"{r['attribution_rate']:.0f} req/s" + (
        " (given)"
        if not probe
        else " (the highest of "
        + ", ".join(f"{x:.0f}" for x in AL_RATES)
        + f" req/s the hand-made port sustained in a {r['probe_seconds']:.0f} s probe: kept up, p50 <= "
        + f"{QUEUE_FREE:.0f}x the raw pass; "
        + "; ".join(
            f"{p['rate']:.0f} req/s: {p['achieved_rps']:.0f} achieved, p50 {p['p50_ms']:.1f} ms"
            for p in probe
        )
        + ")"
    )

    def loadavg(values: list[float]) -> str:
        return " / ".join(f"{v:.2f}" for v in values)

    def kill_cell(key: str, field: str) -> str:
        got = figures.get(key, {})
        cells = []
        for kind in ("single", "failover"):
            c = got.get(kind)
            if c is None:
                cells.append("-")
            elif field == "lost":
                cells.append(f"{c['lost']}/{c['calls_after_kill']}")
            else:
                cells.append(fmt_s(c["recovered_after_s"], c["window_s"]))
        return " ; ".join(cells)

    def table(rpc: str) -> list[str]:
        rows = [
            "| path | p50 ms | p99 ms | p99 ms of each round | req/s | errors | lost on a kill (single ; failover) | calls succeed again after (single ; failover) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for p in r["paths"]:
            if p["rpc"] != rpc:
                continue
            got = lat[p["key"]]
            rows.append(
                f"| {p['label']} | {got['p50_ms']:.2f} | {got['p99_ms']:.2f} | "
                f"{' / '.join(format(x, '.1f') for x in got['round_p99_ms'])} | {got['achieved_rps']:.0f} | "
                f"{got['errors']} | "
                f"{kill_cell(p['key'], 'lost')} | {kill_cell(p['key'], 'recovered')} |"
            )
        if rpc == "AttributeLatents":
            for name, raw in r["raw_forward_backward"].items():
                rows.append(
                    f"| raw forward + backward, in process, {name.split('_')[0]} torch "
                    f"thread{'' if name.startswith('1_') else 's'} | {raw['p50_ms']:.2f} | "
                    f"{raw['p99_ms']:.2f} | - | sequential | - | - | - |"
                )
        return rows

    kills = [
        "| replica killed | its address -> the replacement's | replacement answers after | client (targets) | lost / sent after the kill | failed with | calls succeed again after | slowest answered call ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k in r["kills"]:
        back = k["replacement_answers_after_s"]
        for i, c in enumerate(k["clients"]):
            head = (
                f"{k['label']} | {k['address_before']} -> {k['replacement_address'] or '?'} | "
                f"{'-' if back is None else format(back, '.1f') + ' s'}"
                if i == 0
                else " | | "
            )
            codes = ", ".join(f"{code} {n}" for code, n in sorted(c["failed_codes"].items())) or "-"
            slow = (
                "-" if c["max_answered_ms_after_kill"] is None else f"{c['max_answered_ms_after_kill']:.0f}"
            )
            kills.append(
                f"| {head} | {c['kind']}: {', '.join(c['targets'])} ({c['label'].split(':')[0]}) | "
                f"{c['lost']} / {c['calls_after_kill']} | {codes} | {fmt_s(c['recovered_after_s'], c['window_s'])} | {slow} |"
            )

    def versus_hand(key: str, hand: str) -> str:
        got, ref = lat[key], lat[hand]
        return f"p50 {got['p50_ms'] - ref['p50_ms']:+.1f} ms, p99 {got['p99_ms'] - ref['p99_ms']:+.1f} ms"

    ratios = [
        f"{p['label']}: **{lat[p['key']]['p50_ms'] / raw_p50:.2f}x**"
        + ("" if p["key"] == "al_hand" else f" ({versus_hand(p['key'], 'al_hand')} vs the hand-made port)")
        for p in r["paths"] if p["rpc"] == "AttributeLatents"
    ]  # fmt: skip
    ta_goal = [
        f"{p['label']}: **{lat[p['key']]['p99_ms']:.1f} ms** ({'met' if lat[p['key']]['p99_ms'] <= 10 else 'NOT met'}"
        + ("" if p["key"] == "ta_hand" else f"; {versus_hand(p['key'], 'ta_hand')} vs the hand-made port")
        + ")"
        for p in r["paths"] if p["rpc"] == "TopActivations"
    ]  # fmt: skip
    replace, reasons = decision(r)
    lines = [
        "# Serve's direct ingress vs the hand-made direct ports (AttributeLatents, TopActivations)",
        "",
        f"Command: `{r['command']}` at commit {r['commit']} ({r['total_s'] / 60:.1f} min; the apps took "
        f"{r['startup_s']:.0f} s to answer on every path). "
        f"Machine: {r['machine']['cpus']} shared CPU cores, no GPU; Ray (4 logical CPUs), every replica, Redis, "
        f"{r['front_label']}, ghz and the kill clients on those cores. Load average (1 / 5 / 15 min): before the "
        f"rounds {loadavg(load['before_rounds'])}, after them {loadavg(load['after_rounds'])}, at the end "
        f"{loadavg(load['end'])}; CPU steal during the rounds "
        f"{'not measured' if r['cpu_steal_during_rounds'] is None else format(r['cpu_steal_during_rounds'], '.1%')}. "
        f"Ray 2.60 with {', '.join(f'`{k}={v}`' for k, v in r['env'].items())}.",
        "",
        "One Ray session, three Serve apps: `cliplens` as `start_app` deploys it (hand-made ports 9001 / 9002 on, "
        "the CliplensIngress behind the fixed port), `attribution` (the Attributor class as an ingress: one "
        "method per AttributionService rpc over an AttributionApi whose backend is the replica itself, the code "
        "path of its hand-made port) and `features` (a FeatureService ingress: FeatureApi over Redis, labels and "
        "search from the cliplens app's Attributor). One replica each "
        f"(the `features` app: {r['feature_replicas']}); the Attributors reserve 1 CPU, the rest 0.25. "
        f"The fixed port is served by {r['front_label']}"
        + (
            ", which routes each call by its `application` metadata to the ingress replica's direct-ingress port."
            if r["front"] == "haproxy"
            else " (kept on the head node in direct-ingress mode): proxy -> ingress replica, two actor hops."
        ),
        "",
        f"## Latency: AttributeLatents at {rate_note}, TopActivations at {r['ta_rate']} req/s",
        "",
        f"ghz (16 workers, one connection, open loop), {len(next(iter(r['rounds'].values())))} rounds of "
        f"{r['round_seconds']:.0f} s per path, the paths in turn in each round, pooled. AttributeLatents: one 32 px "
        "JPEG, one text, the demo final-site TopK SAE, top 10. TopActivations: k 16, the final SAE's latents in turn. "
        "The kill columns come from the next section (single: a client of that address alone; failover: "
        "`Client([that address, fixed port])`; for the fixed-port rows, a client of the fixed port alone).",
        "",
        "### AttributeLatents",
        "",
        *table("AttributeLatents"),
        "",
        f"p50 / raw p50 ({raw_p50:.2f} ms: the faster of the two thread counts; goal <= 1.5): "
        + "; ".join(ratios)
        + ".",
        "",
        "### TopActivations",
        "",
        *table("TopActivations"),
        "",
        "Goal p99 <= 10 ms at 100 req/s: " + "; ".join(ta_goal) + ".",
        "",
        f"## A killed replica ({r['kills'][0]['clients'][0]['rate']:.0f} calls/s per client, {window:.0f} s after the kill)",
        "",
        "`ray.kill` of the replica that serves the path, while each client sends at a fixed rate (open loop); the "
        "cliplens `Client` with its default retries (4 attempts on UNAVAILABLE) and a "
        f"{r['call_timeout']:.0f} s deadline per call. Lost: calls that raised. Calls succeed again after: from the "
        "kill to the first answered call after the last failed one. Replacement answers after: a fresh channel, "
        "every 0.1 s, to the address Serve publishes for the replacement (the fixed hand-made port for the "
        "hand-made ones).",
        "",
        *kills,
        "",
        "## What Serve's direct ingress needs (Ray 2.60 source, and what this run saw)",
        "",
        "- Only an app's ingress replica serves it: the Attributor or the feature lookups need apps of their own "
        "(as here) for a call to skip the ingress -> deployment hop; through the cliplens app's own ingress "
        "AttributeLatents still pays one handle hop (the `cliplens app` rows).",
        "- Ports are allocated per node by the controller (`NodePortManager`), lowest free first, from [40000, 41000) "
        "for gRPC and [30000, 31000) for HTTP, shared by every app's ingress replicas on the node: which app gets "
        "which port depends on start order. A replica binds `[::]:port` (no host setting).",
        "- A dead replica's port is quarantined for `RAY_SERVE_PORT_QUARANTINE_S` (default HAProxy's hard-stop-after "
        "120 s + 30 s) and its replacement takes the next free port: a client or a Service pinned to the old port "
        "never reaches the replacement (the single-target direct-ingress rows above).",
        "- Clients find the ports only from the controller: `get_target_groups` (what HAProxy is configured "
        "from; without HAProxy the Serve details of the dashboard's REST API, `/api/serve/applications/`, list "
        "them as `target_groups`). There is no DNS name or fixed port: a headless Service with a fixed "
        "`targetPort` cannot follow a port that differs per app, per node and per restart (and a one-port range "
        "would leave no port for a replacement or a second app while the old port is quarantined). The one "
        "stable address Serve offers is the fixed port in front: its Python proxy on the head node (two actor "
        "hops again) or, with `RAY_SERVE_ENABLE_HA_PROXY=1`, HAProxy (on every node by default; it replaces "
        "Serve's proxy for every app, HTTP too). HAProxy health-checks each replica port every 5 s (250 ms while "
        "changing state), marks a server down after 3 layer-4 errors, and keeps the head's fallback Serve proxy "
        "as a backup server, which routes to the same dead replica when an app has no other: calls then wait "
        "out their deadline (DEADLINE_EXCEEDED) or hit the queue bound (RESOURCE_EXHAUSTED) instead of failing "
        "fast; with a second replica HAProxy moves to it.",
        "- A replica only answers its own app's `application` metadata (NOT_FOUND otherwise), and the cliplens "
        "`Client` sends one app to every target: a client cannot fail over from the `attribution` app to the "
        "cliplens app's fixed port (the failover rows of the own apps reach the same dead replica).",
        "- A graceful stop of a direct-ingress replica (scale-down, redeploy) holds it at least "
        "`RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S` (30 s) so load balancers can deregister it.",
        "- `RAY_SERVE_THROUGHPUT_OPTIMIZED=1`, which `benchmarks/serve_common.py` sets, turns direct ingress on "
        "by default: the earlier serve benchmarks already ran with it (their port-9000 figures are Serve's proxy, "
        "kept on the head node; the CliplensIngress listened on 40000 besides).",
        "",
        "## Decision",
        "",
        (
            "**Replace DirectPortHost and the FeatureGateway with Serve's direct ingress behind HAProxy.** On "
            "this run it meets both latency goals on a stable address (the fixed gRPC port) and loses no more "
            "calls on a kill, with fewer parts of our own:"
            if replace
            else "**Keep the hand-made direct ports (DirectPortHost, the FeatureGateway).** Serve's direct ingress "
            "does not meet every condition (both latency goals, a stable address, no more calls lost on a kill):"
        ),
        "",
        *(f"- {reason}" for reason in reasons),
        "",
        ("The change (not made here):" if replace else "What the switch would be, if revisited:"),
        "",
        "- Staged: deploy the `attribution` and `features` apps with HAProxy beside the hand-made ports, move "
        "the clients to the fixed port, confirm both goals on the cluster's own cores (the tail is where Serve's "
        "way pays: see *To watch*), then delete the hand-made ports.",
        "- `services/`: the Attributor becomes the ingress of an `attribution` app: `with_rpc_methods"
        "([AttributionApi.service])` on it, `self.apis` over an AttributionApi whose backend is the replica "
        "itself (as `AttributorIngress` here), grpc.health `Check`/`Watch` as the CliplensIngress has them, no "
        "DirectPortHost. The FeatureGateway gives way to a `features` app whose ingress serves FeatureApi over "
        "FeatureLookups (`FeatureIngress` here). The cliplens app stops binding its own Attributor: its ingress "
        "(Decompose, Steer, labels, search, and AttributionService on the fixed port for old clients) calls the "
        "`attribution` app's through `serve.get_deployment_handle`, or the Attributors run twice. `app.py` gets "
        "a builder per app and `start_app` deploys three; delete `direct_port.py`, the FeatureGateway module, "
        "`grpc_handler` in `transports.py`, `DirectPortSettings` with `feature_port` / `attribution_port` "
        "(and their TLS files), the gateway's head-only resource and `ServePorts.feature` / `.attribution`.",
        "- Chart: `RAY_SERVE_ENABLE_HA_PROXY=1` on every Ray pod (HAProxy then serves the fixed gRPC and HTTP "
        "ports of every app on every node); the three apps in the RayService's serveConfigV2; no `-features` / "
        "`-attribution` Services (the existing Serve Service on the fixed port reaches every app), no "
        "`directPortsTls` (TLS is terminated in front, as for port 9000 today); the pods' [40000, 41000) range "
        "reachable between pods (HAProxy on one node routes to replicas on others) and outside Ray's "
        "worker-port range.",
        '- Clients: `Client(<serve service>:9000, app="attribution")` / `app="features"`: the client sends '
        "one `application` per client, so a caller of all services needs one client per app (or the client "
        "learns a service -> app map); `dns:///` lists and `[direct, 9000]` failover lists are no longer needed.",
        "- Gained: direct calls now count toward Serve's queue bounds and autoscaling (the hand-made ports "
        "bypass both). Lost: the per-port TLS and `max_concurrent_rpcs`, cross-app failover in one client.",
        "- To watch: HAProxy mode is a feature flag in Ray 2.60 and replaces Serve's proxy for every app; a graceful "
        "stop of an ingress replica takes >= 30 s; TopActivations' p99 margin under 10 ms is smaller "
        f"({lat['ta_front_own']['p99_ms']:.1f} ms pooled, worst round "
        f"{max(lat['ta_front_own']['round_p99_ms']):.1f} ms, vs {lat['ta_hand']['p99_ms']:.1f} ms on the hand-made "
        "port on this shared 2-core machine).",
        "",
        "Run: `make ghz && .venv/bin/python benchmarks/direct_ingress.py` (`--quick`: a smoke run of a few minutes).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
