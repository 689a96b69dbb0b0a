"""Failover of Client and AsyncClient across an ordered list of targets, against real local gRPC servers.

Deterministic: the cool-downs run on a fake clock, and a server is stopped while calls are in flight
on it (a gate on the calls that arrived), never after a sleep.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import ExitStack, contextmanager
from typing import Any

import grpc
import pytest
from scripted_server import DEMO_MODEL, ModelServer, serve_scripted, unused_address

from cliplens_client import (
    AsyncClient,
    Client,
    DeadlineExceededError,
    FailoverPolicy,
    InvalidArgumentError,
    InvalidRequestError,
    ModelInfo,
    RetryPolicy,
    UnavailableError,
)
from cliplens_client.connection import TIMEOUT_METADATA

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
COOLDOWN = 5.0
NO_RETRIES = RetryPolicy(max_attempts=1)  # a failover is not a retry: it needs no second attempt
FAST_RETRIES = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)
KINDS = pytest.mark.parametrize("kind", ["sync", "async"])


class FakeClock:
    """Monotonic seconds that move only when a test moves them."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Caller:
    """A sync or async client behind one blocking interface; ``submit`` runs a call concurrently.

    The async client lives on an event loop in its own thread, so that the test can stop servers
    while calls are in flight, as it does with the sync client's threads.
    """

    def __init__(self, kind: str, targets: list[str], **options: Any) -> None:
        self.kind = kind
        if kind == "sync":
            self._pool = futures.ThreadPoolExecutor(max_workers=8)
            self.client: Any = Client(targets, **options)
            return
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def create() -> AsyncClient:
            return AsyncClient(targets, **options)

        self.client = self._run(create())

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=60)

    def submit(self) -> futures.Future[list[ModelInfo]]:
        if self.kind == "sync":
            return self._pool.submit(self.client.list_models)
        return asyncio.run_coroutine_threadsafe(self.client.list_models(), self._loop)

    def list_models(self) -> list[ModelInfo]:
        return self.submit().result(timeout=60)

    def close(self) -> None:
        if self.kind == "sync":
            self.client.close()
            self._pool.shutdown()
            return
        self._run(self.client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@contextmanager
def caller(kind: str, targets: list[str], **options: Any) -> Iterator[Caller]:
    options.setdefault("retry", NO_RETRIES)
    client = Caller(kind, targets, **options)
    try:
        yield client
    finally:
        client.close()


@contextmanager
def two_servers() -> Iterator[tuple[ModelServer, ModelServer]]:
    with ExitStack() as stack:
        yield stack.enter_context(serve_scripted()), stack.enter_context(serve_scripted())


def answered(models: list[ModelInfo]) -> bool:
    return [model.id for model in models] == [DEMO_MODEL.id]


@KINDS
@pytest.mark.parametrize("down", ["nothing listening", "answers UNAVAILABLE"])
def test_unavailable_target_fails_over_to_the_next_at_once(
    kind: str, down: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cliplens_client")
    with two_servers() as (a, b):
        if down == "nothing listening":
            a.stop()
            first = unused_address()
        else:
            a.service.failures = [UNAVAILABLE]
            first = a.address
        # One attempt only, so no backoff can come between the two targets.
        with caller(kind, [first, b.address]) as client:
            assert answered(client.list_models())
        assert b.service.calls == 1
        assert a.service.calls == (1 if down == "answers UNAVAILABLE" else 0)
    assert f"ListModels: {first} is unavailable" in caplog.text
    assert f"failing over to {b.address}" in caplog.text
    assert f"ListModels answered by {b.address} after 2 attempts" in caplog.text


@KINDS
def test_failed_target_cools_down_then_is_preferred_again(kind: str) -> None:
    clock = FakeClock()
    with two_servers() as (a, b):
        a.service.failures = [UNAVAILABLE]
        policy = FailoverPolicy(cooldown=COOLDOWN, clock=clock)
        with caller(kind, [a.address, b.address], failover=policy) as client:
            calls = []
            for step in (0.0, 0.0, COOLDOWN - 0.1, 0.2, 0.0):
                clock.now += step
                assert answered(client.list_models())
                calls.append((a.service.calls, b.service.calls))
    # A fails once; B answers until A's cool-down is over; then A answers again.
    assert calls == [(1, 1), (1, 2), (1, 3), (2, 3), (3, 3)]


@KINDS
def test_target_stopped_mid_run_costs_no_call_and_is_used_again_after_it_returns(kind: str) -> None:
    clock = FakeClock()
    with two_servers() as (a, b):
        policy = FailoverPolicy(cooldown=COOLDOWN, clock=clock)
        with caller(kind, [a.address, b.address], failover=policy) as client:
            assert answered(client.list_models())
            assert (a.service.calls, b.service.calls) == (1, 0)

            a.service.hang = True  # calls wait on A until it stops
            in_flight = [client.submit() for _ in range(4)]
            a.service.wait_for_calls(5)
            a.stop()
            assert all(answered(call.result(timeout=30)) for call in in_flight)
            assert b.service.calls == 4

            later = [client.submit() for _ in range(4)]
            assert all(answered(call.result(timeout=30)) for call in later)
            assert b.service.calls == 8

            a.service.hang = False
            a.start()  # back on the same port, but still cooling down in the client
            assert answered(client.list_models())
            assert (a.service.calls, b.service.calls) == (5, 9)

            clock.now += COOLDOWN
            assert answered(client.list_models())
            assert answered(client.list_models())
            assert (a.service.calls, b.service.calls) == (7, 9)


@KINDS
def test_other_errors_are_answers_not_failovers(kind: str) -> None:
    with two_servers() as (a, b):
        a.service.failures = [grpc.StatusCode.INVALID_ARGUMENT]
        with caller(kind, [a.address, b.address]) as client:
            with pytest.raises(InvalidArgumentError, match="failed with INVALID_ARGUMENT") as info:
                client.list_models()
            assert info.value.targets == (a.address,)
            assert answered(client.list_models())  # A did not cool down
        assert (a.service.calls, b.service.calls) == (2, 0)


@KINDS
def test_deadline_bounds_the_call_across_targets(kind: str) -> None:
    with two_servers() as (a, b):
        a.service.hang = True
        with (
            caller(kind, [a.address, b.address], timeout=0.3) as client,
            pytest.raises(DeadlineExceededError, match=r"within the 0\.3 s deadline"),
        ):
            client.list_models()
        assert b.service.calls == 0


@KINDS
def test_every_target_down_retries_with_backoff_and_names_the_targets(kind: str) -> None:
    with two_servers() as (a, b):
        a.service.failures = [UNAVAILABLE] * 5
        b.service.failures = [UNAVAILABLE] * 5
        with (
            caller(kind, [a.address, b.address], retry=FAST_RETRIES) as client,
            pytest.raises(UnavailableError) as info,
        ):
            client.list_models()
        assert (a.service.calls, b.service.calls) == (3, 3)
    error = info.value
    assert error.attempts == 6 and error.targets == (a.address, b.address)
    assert f"failed with UNAVAILABLE after 6 attempts on {a.address}, {b.address}:" in str(error)


@KINDS
def test_every_target_unreachable_names_them_all(kind: str) -> None:
    targets = [unused_address(), unused_address()]
    with (
        caller(kind, targets, retry=FAST_RETRIES) as client,
        pytest.raises(UnavailableError, match="after 6 attempts on " + ", ".join(targets)),
    ):
        client.list_models()


@KINDS
def test_after_a_failed_pass_the_retry_starts_again_at_the_preferred_target(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cliplens_client")
    with two_servers() as (a, b):
        a.service.failures = [UNAVAILABLE]
        b.service.failures = [UNAVAILABLE]
        with caller(kind, [a.address, b.address], retry=FAST_RETRIES) as client:
            assert answered(client.list_models())
        assert (a.service.calls, b.service.calls) == (2, 1)
    assert "ListModels: every target is unavailable; retrying in" in caplog.text


@KINDS
def test_every_target_gets_the_token_and_the_routing_metadata(kind: str) -> None:
    with two_servers() as (a, b):
        a.service.failures = [UNAVAILABLE]
        with caller(kind, [a.address, b.address], token="s3cret-token") as client:
            client.list_models()
        for server in (a, b):
            metadata = server.service.metadata[0]
            assert metadata["authorization"] == "Bearer s3cret-token"
            assert metadata["application"] == "cliplens"


@KINDS
@pytest.mark.parametrize("again", ["failover", "retry"])
def test_each_attempt_sends_what_is_left_of_the_deadline(kind: str, again: str) -> None:
    """The deadline runs on the fake clock, which only the first attempt's arrival moves."""
    clock = FakeClock()

    def first_attempt_takes_1_5_s() -> None:
        clock.now += 1.5

    with two_servers() as (a, b):
        a.service.failures = [UNAVAILABLE]
        a.service.on_call = first_attempt_takes_1_5_s
        targets, retry = (
            ([a.address, b.address], NO_RETRIES) if again == "failover" else ([a.address], FAST_RETRIES)
        )
        policy = FailoverPolicy(cooldown=COOLDOWN, clock=clock)
        with caller(kind, targets, failover=policy, retry=retry, timeout=10.0) as client:
            assert answered(client.list_models())
        calls = a.service.metadata + b.service.metadata
    assert [int(metadata[TIMEOUT_METADATA]) for metadata in calls] == [10_000, 8_500]


def test_one_address_keeps_its_error_and_channel_as_before() -> None:
    with serve_scripted() as server:
        server.service.failures = [UNAVAILABLE] * 3
        with Client(server.address, retry=FAST_RETRIES) as client:
            with pytest.raises(UnavailableError) as info:
                client.list_models()
            assert client.settings.targets == (server.address,)
            options = dict(client.settings.channel_options)
    assert str(info.value) == "ListModels failed with UNAVAILABLE after 3 attempts: scripted UNAVAILABLE"
    assert info.value.targets == ()
    assert "grpc.max_reconnect_backoff_ms" not in options


def test_several_targets_reconnect_within_about_a_cooldown() -> None:
    targets = ("dns:///localhost:9002", "localhost:9000")
    with Client(targets, failover=FailoverPolicy(cooldown=2.5)) as client:
        assert client.settings.targets == targets
        direct = dict(client.settings.channel_options_for(targets[0]))
        proxy = dict(client.settings.channel_options_for(targets[1]))
    assert direct["grpc.lb_policy_name"] == "round_robin" and "grpc.lb_policy_name" not in proxy
    assert direct["grpc.max_reconnect_backoff_ms"] == proxy["grpc.max_reconnect_backoff_ms"] == 2500


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"address": []}, "at least one target"),
        ({"address": ["localhost:9002", "localhost:9002"]}, "lists a target twice"),
        ({"address": ["localhost:9002", "http://localhost:9000"]}, "host:port or dns:///host:port"),
        ({"address": ["localhost:9002", 9000]}, "host:port or dns:///host:port"),
        ({"failover": 5.0}, "failover must be a FailoverPolicy"),
    ],
)
def test_bad_target_lists_are_refused(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidRequestError, match=problem):
        Client(**options)


def test_bad_failover_policy_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="cooldown must be"):
        FailoverPolicy(cooldown=-1.0)
