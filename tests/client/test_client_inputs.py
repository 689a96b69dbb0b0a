"""Bad arguments raise InvalidRequestError naming the problem, before anything is sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cliplens_client import Client, InvalidRequestError, LatentEdit, ObjectKey, RetryPolicy

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        (lambda c: c.embed_images("demo", ["cat.png"]), "ambiguous image 'cat.png'"),
        (lambda c: c.embed_images("demo", [b"GIF89a..."]), "not a JPEG, PNG or WebP"),
        (lambda c: c.embed_images("demo", [Path("/no/such.png")]), "cannot read image file /no/such.png"),
        (lambda c: c.embed_images("demo", [ObjectKey("s3://bucket/x.png")]), "not a URL"),
        (lambda c: c.embed_images("demo", []), "non-empty sequence of images"),
        (lambda c: c.embed_images("", [PNG]), "model_id must be a non-empty string"),
        (lambda c: c.embed_texts("demo", "a cat"), "not a single string"),
        (lambda c: c.embed_texts("demo", ["a cat", " "]), r"texts\[1\] must be a non-empty string"),
        (lambda c: c.embed_texts("demo", ["a cat"], dtype="float64"), "dtype must be one of"),
        (lambda c: c.encode("sae", activations=np.ones((2, 3)), images=[PNG]), "exactly one of"),
        (lambda c: c.encode("sae"), "exactly one of"),
        (lambda c: c.encode("sae", activations=np.ones((0, 3))), r"shape \(\.\.\., d_in\) with rows"),
        (lambda c: c.decode("sae", np.ones(3)), r"shape \(n, d_sae\)"),
        (lambda c: c.steer("sae", PNG, []), "edits must not be empty"),
        (lambda c: c.steer("sae", PNG, [LatentEdit(1, "scale", 2.0)]), "edit op must be one of"),  # type: ignore[arg-type]
        (lambda c: c.steer("sae", PNG, [LatentEdit(1, "add", float("nan"))]), "must be finite"),
        (lambda c: c.top_activations("sae", -1), "latent must be an integer >= 0"),
        (lambda c: c.top_activations("sae", 1, k=0), "k must be an integer >= 1"),
        (lambda c: c.describe_heads(""), "model_id must be a non-empty string"),
        (lambda c: c.describe_heads("demo", pool="a cat"), "not a single string"),
        (lambda c: c.describe_heads("demo", pool=["a cat", " "]), r"pool\[1\] must be a non-empty string"),
        (lambda c: c.describe_heads("demo", pool=["x"] * 10_001), "pool must hold 1 to 10000 entries"),
        (lambda c: c.describe_heads("demo", per_head=-1), "per_head must be an integer >= 0"),
        (lambda c: c.describe_heads("demo", per_head=21), "per_head must be an integer <= 20"),
        (lambda c: c.describe_heads("demo", pool=["a", "b"], per_head=3), "at most the pool size 2"),
        (lambda c: c.describe_heads("demo", layers=[1.5]), r"layers\[0\] must be an integer >= 0"),
        (lambda c: c.describe_heads("demo", timeout=-5), "timeout must be a positive number"),
        (lambda c: c.rank_heads(" "), "model_id must be a non-empty string"),
        (lambda c: c.rank_heads("demo", dataset="  "), "dataset must be a store key"),
        (lambda c: c.rank_heads("demo", class_names=["cat"]), "class_names must hold 2 to 1000 entries"),
        (lambda c: c.rank_heads("demo", class_names=["cat", ""]), r"class_names\[1\] must be a non-empty"),
        (lambda c: c.rank_heads("demo", max_images=5_001), "max_images must be an integer <= 5000"),
        (lambda c: c.rank_heads("demo", max_images=-1), "max_images must be an integer >= 0"),
        (lambda c: c.rank_heads("demo", top_n=1_001), "top_n must be an integer <= 1000"),
        (lambda c: c.list_models(timeout=0), "timeout must be a positive number"),
    ],
)
def test_bad_arguments_are_refused_locally(call: Any, problem: str) -> None:
    # Nothing listens on this port: every case must fail before a call is attempted.
    with (
        Client("127.0.0.1:9", retry=RetryPolicy(max_attempts=1)) as client,
        pytest.raises(InvalidRequestError, match=problem),
    ):
        call(client)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"address": "http://localhost:9000"}, "host:port or dns:///host:port"),
        ({"address": "dns:///"}, "host:port or dns:///host:port"),
        ({"token": "two words"}, "without whitespace"),
        ({"app": ""}, "app must be"),
        ({"timeout": -1.0}, "timeout must be a positive number"),
        ({"retry": "often"}, "retry must be a RetryPolicy"),
    ],
)
def test_bad_client_options_are_refused(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidRequestError, match=problem):
        Client(**options)


def test_bad_retry_policy_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="max_attempts must be >= 1"):
        RetryPolicy(max_attempts=0)


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=0.3, multiplier=2.0, jitter=0.0)
    assert [policy.backoff(attempt) for attempt in (1, 2, 3, 4)] == pytest.approx([0.1, 0.2, 0.3, 0.3])
    jittered = RetryPolicy(initial_backoff=0.1, jitter=0.5)
    assert all(0.05 <= jittered.backoff(1) <= 0.1 for _ in range(100))
