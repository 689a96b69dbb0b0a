"""Failover across a client's targets, and the attempts of one call, shared by both clients.

Both clients drive :class:`CallAttempts` alike: ``send`` the request, then hand the response to
``answered`` or the error to ``failed``, which says how long to wait before sending again (0: go
on now, to the next target) or raises the client error that ends the call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from cliplens_client.connection import call_metadata, rpc_methods
from cliplens_client.errors import from_grpc
from cliplens_client.retry import Deadline, FailoverPolicy, RetryPolicy

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Target:
    """One address, its channel (blocking or asyncio) and the API's rpcs bound to it."""

    def __init__(self, address: str, channel: Any) -> None:
        self.address = address
        self.channel = channel
        self.methods = rpc_methods(channel)
        self.down_until: float | None = None  # end of its cool-down, on the policy's clock

    def __repr__(self) -> str:
        return f"Target({self.address!r})"


class Targets:
    """A client's targets, preferred first, and their cool-downs; safe across threads and tasks."""

    def __init__(self, targets: Sequence[Target], policy: FailoverPolicy) -> None:
        self.targets = tuple(targets)
        self.policy = policy
        self._lock = threading.Lock()  # never held across an await

    def __iter__(self) -> Iterator[Target]:
        return iter(self.targets)

    def in_order(self) -> list[Target]:
        """Every target in the order to try them now: those not cooling down first."""
        now = self.policy.clock()
        with self._lock:
            cooling = {t.address for t in self.targets if t.down_until is not None and now < t.down_until}
        return sorted(self.targets, key=lambda t: t.address in cooling)  # stable: keeps the order

    def mark_down(self, target: Target) -> None:
        with self._lock:
            target.down_until = self.policy.clock() + self.policy.cooldown

    def mark_up(self, target: Target) -> None:
        if target.down_until is not None:
            with self._lock:
                target.down_until = None


class CallAttempts:
    """One call of ``rpc``: each target in turn on UNAVAILABLE, then the retry policy's backoff.

    A pass sends the call to every target, in :meth:`Targets.in_order`, until one answers or fails
    with another code; the retry policy counts passes, and ``deadline`` bounds them all.
    """

    def __init__(
        self,
        rpc: str,
        targets: Targets,
        retry: RetryPolicy,
        deadline: Deadline,
        metadata: Sequence[tuple[str, str]],
    ) -> None:
        self.rpc = rpc
        self.deadline = deadline
        self._targets = targets
        self._retry = retry
        self._metadata = metadata
        self._passes = 1
        self._pass: list[Target] = []  # what is left of this pass, the current target first
        self._sent: list[str] = []  # the address of each call sent, in order

    def send(self, request: Message) -> Any:
        """Send ``request`` to the current target: the response, or (asyncio) the call to await.

        The attempt gets what is left of the call's deadline, as its gRPC timeout and as metadata
        (:func:`~cliplens_client.connection.call_metadata`) for servers behind Serve's proxy.
        """
        if not self._pass:
            self._pass = self._targets.in_order()
        target = self._pass[0]
        self._sent.append(target.address)
        remaining = self.deadline.remaining()
        metadata = call_metadata(self._metadata, remaining)
        return target.methods[self.rpc](request, timeout=remaining, metadata=metadata)

    def answered(self, response: T) -> T:
        """Note that the current target answered; returns ``response``."""
        self._targets.mark_up(self._pass[0])
        if len(self._sent) > 1:
            logger.debug("%s answered by %s after %d attempts", self.rpc, self._sent[-1], len(self._sent))
        return response

    def failed(self, error: grpc.RpcError) -> float:
        """Seconds to wait before sending again, 0 to fail over now; raises the call's error to give up."""
        code = error.code()
        if code == grpc.StatusCode.UNAVAILABLE:
            self._targets.mark_down(self._pass[0])
            if len(self._pass) > 1:
                self._pass.pop(0)
                logger.debug(
                    "%s: %s is unavailable (%s); failing over to %s",
                    self.rpc,
                    self._sent[-1],
                    error.details(),
                    self._pass[0].address,
                )
                return 0.0
        delay = self._retry.delay_before_retry(self._passes, code, self.deadline)
        if delay is None:
            tried = list(dict.fromkeys(self._sent)) if len(self._targets.targets) > 1 else []
            raise from_grpc(self.rpc, error, len(self._sent), self.deadline.timeout, tried) from error
        self._passes += 1
        self._pass = []
        logger.debug("%s: every target is unavailable; retrying in %.3f s", self.rpc, delay)
        return delay
