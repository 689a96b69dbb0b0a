"""A real multi-node Ray cluster on this machine, for the tests: one head and worker raylets, loopback only.

Each node is ``ray start --block`` in a session of its own (``start_new_session``) with its own temp
dir, so every process the node starts (GCS, raylet, agents, workers, a job's driver on the head) carries
that session id, also where Ray gives a worker a process group of its own. Killing a node is killing its
session: that is how a test makes a worker node die, and how :meth:`RayNodes.stop` ends everything the
cluster started without touching any other Ray on the machine (``ray stop`` would kill them all).

The head has no CPUs (``--num-cpus=0``), so no task or actor that asks for one lands on it; it runs the
dashboard (Jobs and State API). Every address the tests use is on 127.0.0.1 (the dashboard listens
there only) at ports free when the node starts; Ray itself records the machine's IP as the node IP
(``ray start`` rewrites ``--node-ip-address=127.0.0.1`` to a reachable one) and binds its gRPC ports on
all interfaces, which Ray 2.60 offers no setting to change; nothing here connects off the machine. Ray 2.60's
token authentication stays on: the cluster is given a fresh token through ``RAY_AUTH_TOKEN`` (nothing
is read from or written to ``~/.ray``); :attr:`RayNodes.env` is the environment a client (the
``cliplens`` CLI, ``ray job submit``) needs to join it, and the State API calls send the token too.
Every wait is bounded; a node that does not come up in time fails the fixture with its log's tail.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

from cliplens.store.local_stack import free_ports

RAY = str(Path(sys.executable).with_name("ray"))
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
OBJECT_STORE_BYTES = 150 * 1024 * 1024
# Ray notices a dead raylet within about a second instead of the default ~30 s.
FAST_HEALTH_CHECKS = {
    "RAY_health_check_initial_delay_ms": "500",
    "RAY_health_check_period_ms": "300",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout_s: float, what: str, interval_s: float = 0.1) -> T:
    """Poll ``check`` until it returns something other than ``None``/``False``; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def session_pids(sid: int) -> list[int]:
    """Every live process of session ``sid``."""
    pids = []
    for pid in psutil.pids():
        try:
            if os.getsid(pid) == sid:
                pids.append(pid)
        except OSError:  # gone meanwhile
            continue
    return pids


def signal_session(sid: int, signum: int) -> None:
    for pid in session_pids(sid):
        try:
            os.kill(pid, signum)
        except OSError:
            continue


def end_session(sid: int, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGKILL every process of session ``sid``, until none is left (zombies aside)."""

    def gone() -> bool:
        signal_session(sid, signal.SIGKILL)
        alive = []
        for pid in session_pids(sid):
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.Error:
                continue
        return not alive

    wait_for(gone, timeout_s, f"the processes of session {sid} to end")


@dataclass
class RayNode:
    """One ``ray start --block`` process (a session leader) and what it was started with."""

    name: str
    process: subprocess.Popen[bytes]
    temp_dir: Path
    log: Path
    resources: dict[str, float] = field(default_factory=dict)

    @property
    def sid(self) -> int:
        return self.process.pid

    def pids(self) -> list[int]:
        return session_pids(self.sid)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def kill(self) -> None:
        """The node dies at once: every process it started gets SIGKILL (a node lost without notice)."""
        end_session(self.sid)
        self.process.wait(timeout=STOP_TIMEOUT_S)


class RayNodes:
    """A running cluster: :meth:`start` it, add worker nodes, kill them, :meth:`stop` it all."""

    def __init__(self, root: Path | None = None) -> None:
        # Short: Ray's Unix socket paths live under the temp dir and may not exceed ~107 characters.
        self.root = Path(tempfile.mkdtemp(prefix="rn-", dir="/tmp")) if root is None else root
        self.token = secrets.token_hex(32)
        self.gcs_port, self.dashboard_port = free_ports(2)
        self.nodes: dict[str, RayNode] = {}
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in {"RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH"}},
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
            "RAY_USAGE_STATS_ENABLED": "0",
            **FAST_HEALTH_CHECKS,
        }

    @property
    def address(self) -> str:
        """The GCS address, for ``--address`` / ``RAY_ADDRESS``."""
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        """The dashboard (Jobs API: ``ray job submit --address``, State API)."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    # ---- nodes ----

    def _start(self, name: str, args: list[str], resources: dict[str, float]) -> RayNode:
        temp_dir = self.root / name
        temp_dir.mkdir(exist_ok=True)
        log = self.root / f"{name}.log"
        node_manager, object_manager, agent_http, agent_grpc, metrics, runtime_env = free_ports(6)
        argv = [RAY, "start", "--block", "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}"]
        argv += [
            f"--node-manager-port={node_manager}",
            f"--object-manager-port={object_manager}",
            f"--dashboard-agent-listen-port={agent_http}",
            f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--metrics-export-port={metrics}",
            f"--runtime-env-agent-port={runtime_env}",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            "--num-gpus=0",
            "--disable-usage-stats",
            *args,
        ]
        if resources:
            argv.append(f"--resources={json.dumps(resources)}")
        with open(log, "wb") as out:
            process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        node = RayNode(name, process, temp_dir, log, resources)
        self.nodes[name] = node
        return node

    def start(self, workers: dict[str, dict[str, float]]) -> RayNodes:
        """The head, then the given worker nodes (name -> resources, e.g. ``{"CPU": 1, "w_a": 1}``), one
        after the other (on a busy 2-core machine, parallel starts can outlast Ray's own 30 s limit)."""
        head_args = [
            "--head",
            f"--port={self.gcs_port}",
            "--num-cpus=0",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--ray-client-server-port={free_ports(1)[0]}",
        ]
        self._start_alive("head", head_args, {})
        for name, resources in workers.items():
            self.add_worker(name, resources)
        return self

    def add_worker(self, name: str, resources: dict[str, float]) -> RayNode:
        """Start a worker node joining the head (``resources``: ``CPU`` and custom resources); returns
        once the GCS lists it alive."""
        custom = {k: v for k, v in resources.items() if k != "CPU"}
        args = [f"--address={self.address}", f"--num-cpus={int(resources.get('CPU', 1))}"]
        return self._start_alive(name, args, custom)

    def _start_alive(self, name: str, args: list[str], resources: dict[str, float]) -> RayNode:
        """Start a node and wait until it is alive; one more try if ``ray start`` gives up (it allows a
        raylet 30 s to register, which a machine busy with other tests can exceed)."""
        for attempt in (1, 2):
            node = self._start(name, args, resources)

            def up(node: RayNode = node) -> bool:
                if node.process.poll() is not None:
                    raise RuntimeError(f"ray start of {node.name} exited: {node.log_tail()}")
                return self.node_id(node) is not None

            try:
                wait_for(up, START_TIMEOUT_S, f"node {name}", interval_s=0.3)
                return node
            except (RuntimeError, TimeoutError) as exc:
                end_session(node.sid)
                node.process.wait(timeout=STOP_TIMEOUT_S)
                shutil.rmtree(node.temp_dir, ignore_errors=True)
                if attempt == 2 or self.nodes["head"] is node:
                    raise RuntimeError(f"{exc}\n--- {name}'s log:\n{node.log_tail()}") from None
        raise AssertionError("unreachable")

    def node_id(self, node: RayNode) -> str | None:
        """The node's Ray id while the GCS lists it alive (matched by its resources; the head: is_head)."""
        try:
            alive = self.alive_nodes()
        except (OSError, urllib.error.URLError, ValueError):
            return None  # the dashboard is not up yet
        for info in alive:
            total = info.get("resources_total", {})
            if node.name == "head" and info.get("is_head_node"):
                return str(info["node_id"])
            if node.resources and all(total.get(k) == v for k, v in node.resources.items()):
                return str(info["node_id"])
        return None

    def alive_nodes(self) -> list[dict[str, Any]]:
        return [n for n in self.state("nodes", detail=True) if n.get("state") == "ALIVE"]

    def kill(self, name: str) -> None:
        """SIGKILL every process of worker node ``name`` and wait until the GCS no longer lists it alive."""
        node_id = self.node_id(self.nodes[name])
        self.nodes[name].kill()
        if node_id is not None:
            self.wait_dead(node_id)

    def wait_dead(self, node_id: str) -> None:
        """Wait until the GCS no longer lists ``node_id`` alive (its health checks run every 0.3 s)."""
        wait_for(
            lambda: node_id not in {n["node_id"] for n in self.alive_nodes()},
            30,
            f"Ray to mark node {node_id} dead",
            interval_s=0.2,
        )

    def stop(self) -> None:
        """SIGKILL every node's session (workers first), then remove the temp dirs; never raises."""
        errors = []
        for node in reversed(list(self.nodes.values())):
            try:
                end_session(node.sid)
                node.process.wait(timeout=STOP_TIMEOUT_S)
            except Exception as exc:  # keep stopping the others
                errors.append(f"{node.name}: {exc}")
        shutil.rmtree(self.root, ignore_errors=True)
        if errors:
            print(f"ray_nodes: could not stop cleanly: {errors}", file=sys.stderr)

    # ---- State API (the dashboard's REST endpoints; the token in the Authorization header) ----

    def get(self, path: str, timeout_s: float = 10.0) -> Any:
        request = urllib.request.Request(
            self.dashboard_url + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.load(response)

    def state(self, resource: str, *, detail: bool = False) -> list[dict[str, Any]]:
        """``/api/v0/<resource>`` (nodes, actors, tasks, ...): every entry, as ``ray list`` shows them."""
        body = self.get(f"/api/v0/{resource}?limit=10000&detail={int(detail)}&timeout=10")
        if not body.get("result", False):
            raise ValueError(f"State API {resource}: {body.get('msg')}")
        entries: list[dict[str, Any]] = body["data"]["result"]["result"]
        return entries

    def jobs(self) -> list[dict[str, Any]]:
        """Every job the cluster has seen (drivers and submitted jobs), from the Jobs API."""
        jobs: list[dict[str, Any]] = self.get("/api/jobs/")
        return jobs
