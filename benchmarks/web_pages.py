"""The web pages at /ui: a latent page's server time from the cache, and what an explain request costs
beside the gRPC calls behind it; plus the README's screenshots.

One Ray session (``serve_common.demo_stack``, the one-machine deployment options of ``cliplens serve``)
serves the demo catalogue: the final-site TopK SAE and the patch-site ReLU SAE. Pages are fetched with
``http.client`` on one keep-alive connection to Serve's HTTP proxy; each answer's ``Server-Timing:
app;dur`` is the time inside the ingress replica's HTTP handler, and the wall time is the client's,
request sent to body read.

- Latent pages (``GET /ui/sae/<sae>/latent/<n>``): after a warm-up pass over the latents,
  ``--requests`` requests per SAE cycling over ``--latents`` latents that have top inputs, one after
  another. The page runs LatentInfo and TopActivations concurrently in process; its ``#source`` must
  say both came from the cache (Redis), else the run fails. In turn with each page, for the same
  latent: the same two calls through the gRPC client on port 9000 (the ingress), one after the other
  (summed) and together (``AsyncClient``, ``asyncio.gather``); the same pair on the FeatureGateway's
  direct port; and the Redis lookups alone (``FeatureLookups`` in this process: no labels, no
  neighbours). Goal: the page's server time <= 100 ms.
- Explain (``POST /ui/explain``, multipart: SAE, image upload or data-set key, two prompts): for
  ``--images`` images, each as an upload and as a key, and both SAEs, ``--explain-rounds`` rounds of
  the page, then AttributeLatents (top 8, patch maps for the patch SAE, as the page asks) and Decompose
  of the first prompt through port 9000 one after the other, and the two together; the order rotates
  each round. Goal: the page costs no more than those calls.
- Screenshots (``--screenshots DIR``, default ``benchmarks/results/web``; ``--no-screenshots`` skips
  them): Playwright drives Debian's chromium (`make browser`) at 1200x900.

Writes ``benchmarks/results/web_pages.{md,json}`` (or ``--out``).
Run: ``.venv/bin/python benchmarks/web_pages.py`` (a few minutes on 2 shared cores; ``--quick``: a
smoke run).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from cliplens.core.sites import Site
from cliplens.demo.catalogue import FINAL_SAE, PATCH_SAE, RUN_ID, DemoIndex
from cliplens.serve.local_app import local_options
from cliplens_client import (
    AsyncClient,
    Client,
    Decomposition,
    LatentInfo,
    ObjectKey,
    SaeInfo,
    TextAttribution,
    TopActivations,
)
from cliplens_client.inputs import ImageInput
from serve_common import APP, RESULTS, ROOT, Running, Stack, cpu_times, demo_stack, steal_share, write_results

T = TypeVar("T")
SAES = (FINAL_SAE, PATCH_SAE)
PROMPTS = ("a photo of a cat", "a photo of a dog")
TOP_LATENTS = 8  # WebSettings.top_latents: the explain page's top_n
TOP_K = 16  # the latent page's TopActivations k (the client's default)
GOAL_MS = 100.0
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1200, "height": 900}
SOURCE = re.compile(r'<p class="source" id="source">(.*?)</p>', re.S)
TIMING = re.compile(r"app;dur=([0-9.]+)")


# --------------------------------------------------------------------------------------------------
# Plain HTTP on one keep-alive connection.


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    server_ms: float  # Server-Timing app;dur
    wall_ms: float


class Http:
    """One keep-alive connection to Serve's HTTP proxy; reconnects (and counts it) when it is closed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reconnects = 0
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def request(self, method: str, path: str, body: bytes | None = None, ctype: str = "") -> Answer:
        headers = {"Content-Type": ctype} if ctype else {}
        for attempt in (0, 1):
            start = time.perf_counter()
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionError, http.client.CannotSendRequest):
                if attempt:
                    raise
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                self.reconnects += 1
                continue
            wall = (time.perf_counter() - start) * 1e3
            timing = TIMING.search(response.getheader("Server-Timing") or "")
            if timing is None:
                raise RuntimeError(f"{method} {path}: no Server-Timing app;dur header ({response.status})")
            return Answer(response.status, data, float(timing.group(1)), wall)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def multipart(fields: dict[str, str], image: bytes | None) -> tuple[bytes, str]:
    """A multipart/form-data body of ``fields`` and, when given, the file field ``image``."""
    boundary = f"cliplens-{uuid.uuid4().hex}"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    if image is not None:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="image.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        )
        parts.append(head.encode() + image + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def wait_for_pages(web: Http, timeout_s: float = 300) -> float:
    """Seconds until ``/ui/saes`` answers 200."""
    start = time.monotonic()
    while True:
        try:
            if web.request("GET", "/ui/saes").status == 200:
                return time.monotonic() - start
        except (OSError, http.client.HTTPException, RuntimeError):
            pass
        if time.monotonic() - start > timeout_s:
            raise RuntimeError(f"/ui/saes did not answer 200 within {timeout_s:.0f} s")
        time.sleep(1.0)


# --------------------------------------------------------------------------------------------------
# Figures.


def stats_ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"n": len(values), "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99),
            "max_ms": max(values), "mean_ms": statistics.fmean(values)}  # fmt: skip


def timed(call: Callable[..., T], *args: Any) -> tuple[T, float]:
    """``call(*args)`` and its milliseconds."""
    start = time.perf_counter()
    result = call(*args)
    return result, (time.perf_counter() - start) * 1e3


def spread(latents: list[int], n: int) -> list[int]:
    """``n`` of ``latents`` (sorted), evenly spaced; all of them when there are fewer."""
    if len(latents) <= n:
        return latents
    return [latents[round(i * (len(latents) - 1) / (n - 1))] for i in range(n)] if n > 1 else latents[:1]


def with_top_inputs(index: DemoIndex, sae_id: str) -> list[int]:
    return sorted({row.latent for row in index.topk[sae_id]})


def selective(index: DemoIndex, sae_id: str) -> int:
    """Of the latents with the most top inputs, the one whose firing rate is nearest 10%."""
    latents = [row.latent for row in index.topk[sae_id]]
    most = max(latents.count(n) for n in set(latents))
    full = [n for n in sorted(set(latents)) if latents.count(n) == most]
    stats = index.stats[sae_id]
    return min(full, key=lambda n: abs(stats[n].fires / max(1, stats[n].rows) - 0.1))


# --------------------------------------------------------------------------------------------------
# Measurements.


class Loop:
    """One asyncio loop for the async gRPC client and the in-process lookups, driven call by call."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, awaitable: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await awaitable

        return self.loop.run_until_complete(wrapped())

    def timed(self, make: Callable[..., Awaitable[T]], *args: Any) -> tuple[T, float]:
        """``await make(*args)`` and its milliseconds."""
        start = time.perf_counter()
        result = self.run(make(*args))
        return result, (time.perf_counter() - start) * 1e3

    def close(self) -> None:
        self.loop.close()


def check_latent_page(answer: Answer, sae_id: str, latent: int) -> None:
    """Fails loudly unless the page answered 200 and says both answers came from the cache."""
    where = f"/ui/sae/{sae_id}/latent/{latent}"
    if answer.status != 200:
        raise RuntimeError(f"{where}: HTTP {answer.status}: {answer.body[:500]!r}")
    found = SOURCE.search(answer.body.decode())
    text = " ".join(found.group(1).split()) if found else ""
    if text.count("cache (Redis)") != 2 or "degraded" in text:
        raise RuntimeError(f"{where}: not answered from the cache (Redis): #source says {text!r}")


def measure_latent_pages(
    web: Http, stack: Stack, running: Running, loop: Loop, latents: dict[str, list[int]], requests: int
) -> dict[str, Any]:
    """Per SAE: the page (server and wall), and in turn with it the same calls through gRPC."""
    from cliplens.serve.feature_lookups import FeatureLookups

    settings = stack.settings
    lookups = loop.run(make_lookups(FeatureLookups, settings.store(), settings.cache_url))
    ways = ("page_server", "page_wall", "grpc_sequential", "grpc_concurrent", "direct_sequential",
            "redis_lookups", "render")  # fmt: skip
    out: dict[str, Any] = {}
    with Client(running.address, app=APP) as grpc_client, Client(running.feature_address, app=APP) as direct:
        saes = {sae.id: sae for sae in grpc_client.list_saes()}
        aclient = loop.run(make_async_client(running.address))

        def pair(client: Client, sae_id: str, latent: int) -> tuple[LatentInfo, TopActivations]:
            return client.latent_info(sae_id, latent), client.top_activations(sae_id, latent, k=TOP_K)

        async def together(sae_id: str, latent: int) -> None:
            await asyncio.gather(
                aclient.latent_info(sae_id, latent), aclient.top_activations(sae_id, latent, k=TOP_K)
            )

        async def from_redis(sae_id: str, latent: int) -> None:
            top, stats = await asyncio.gather(
                lookups.top(sae_id, RUN_ID, latent, TOP_K), lookups.stats(sae_id, RUN_ID, latent)
            )
            if not (top.from_redis and stats.from_redis):
                raise RuntimeError(f"{sae_id} latent {latent}: the in-process lookups missed Redis")

        try:
            for sae_id, chosen in latents.items():  # warm-up: every latent once, every way
                for latent in chosen:
                    check_latent_page(web.request("GET", f"/ui/sae/{sae_id}/latent/{latent}"), sae_id, latent)
                    pair(grpc_client, sae_id, latent)
                    pair(direct, sae_id, latent)
                    loop.run(together(sae_id, latent))
                    loop.run(from_redis(sae_id, latent))
            for sae_id, chosen in latents.items():
                times: dict[str, list[float]] = {way: [] for way in ways}
                sizes = []
                for i in range(requests):
                    latent = chosen[i % len(chosen)]
                    answer = web.request("GET", f"/ui/sae/{sae_id}/latent/{latent}")
                    check_latent_page(answer, sae_id, latent)
                    times["page_server"].append(answer.server_ms)
                    times["page_wall"].append(answer.wall_ms)
                    sizes.append(len(answer.body))
                    (info, top), ms = timed(pair, grpc_client, sae_id, latent)
                    times["grpc_sequential"].append(ms)
                    times["render"].append(timed(render_latent, saes[sae_id], info, top)[1])
                    times["grpc_concurrent"].append(loop.timed(together, sae_id, latent)[1])
                    times["direct_sequential"].append(timed(pair, direct, sae_id, latent)[1])
                    times["redis_lookups"].append(loop.timed(from_redis, sae_id, latent)[1])
                figures = {way: stats_ms(values) for way, values in times.items()}
                grpc_p50 = figures["grpc_sequential"]["p50_ms"]
                out[sae_id] = {
                    "latents": chosen,
                    "requests": requests,
                    "page_bytes_median": int(statistics.median(sizes)),
                    **figures,
                    "ratio_page_server_p50_to_grpc_sequential_p50": figures["page_server"]["p50_ms"]
                    / grpc_p50,
                    "ratio_page_wall_p50_to_grpc_sequential_p50": figures["page_wall"]["p50_ms"] / grpc_p50,
                    "ratio_page_wall_p50_to_grpc_concurrent_p50": figures["page_wall"]["p50_ms"]
                    / figures["grpc_concurrent"]["p50_ms"],
                    "goal_met_p50": figures["page_server"]["p50_ms"] <= GOAL_MS,
                    "goal_met_p99": figures["page_server"]["p99_ms"] <= GOAL_MS,
                }
        finally:
            loop.run(aclient.close())
    return out


def render_latent(sae: SaeInfo, info: LatentInfo, top: TopActivations) -> str:
    """The latent page's HTML from these answers, rendered here as the ingress renders it."""
    from cliplens.serve.web.pages import LatentView
    from cliplens.serve.web.ui import TEMPLATES

    view = LatentView(sae, info, top)
    return TEMPLATES.get_template("latent.html").render(root="", logged_in=False, view=view)


def render_explain(
    case: ExplainCase, attributions: list[TextAttribution], decomposition: Decomposition
) -> str:
    """The explain page's HTML from these answers, rendered here as the ingress renders it."""
    from cliplens.serve.web.pages import Explanation
    from cliplens.serve.web.ui import TEMPLATES, data_uri

    explanation = Explanation(case.sae, list(PROMPTS), attributions, decomposition)
    key = "" if case.kind == "upload" else case.key
    href = data_uri(case.jpeg) if case.kind == "upload" else f"/ui/images/{case.key}"
    return TEMPLATES.get_template("explain.html").render(
        root="", logged_in=False, explanation=explanation, key=key, image_href=href
    )


async def make_lookups(cls: Any, store: Any, redis_url: str) -> Any:
    return cls(store, redis_url, 1.0)


async def make_async_client(address: str) -> AsyncClient:
    return AsyncClient(address, app=APP)


@dataclass(frozen=True)
class ExplainCase:
    sae: SaeInfo
    kind: str  # "upload" or "key"
    key: str
    jpeg: bytes

    @property
    def sae_id(self) -> str:
        return self.sae.id

    @property
    def patches(self) -> bool:
        return Site.parse(self.sae.site).patches

    @property
    def image(self) -> ImageInput:
        return self.jpeg if self.kind == "upload" else ObjectKey(self.key)

    def form(self) -> tuple[bytes, str]:
        fields = {"sae": self.sae_id, "prompts": "\n".join(PROMPTS)}
        if self.kind == "key":
            fields["key"] = self.key
        return multipart(fields, self.jpeg if self.kind == "upload" else None)


def check_explanation(answer: Answer, case: ExplainCase) -> None:
    body = answer.body.decode()
    if answer.status != 200 or 'id="prompt-1"' not in body or "Decomposition of" not in body:
        raise RuntimeError(
            f"POST /ui/explain ({case.sae_id}, {case.kind} {case.key}): HTTP {answer.status}: {body[:500]!r}"
        )


def measure_explain(
    web: Http, running: Running, loop: Loop, cases: list[ExplainCase], rounds: int
) -> dict[str, Any]:
    """Per case, ``rounds`` rounds of the page and the gRPC calls behind it (order rotating)."""
    rows: list[dict[str, Any]] = []
    with Client(running.address, app=APP) as client:
        aclient = loop.run(make_async_client(running.address))

        def sequential(case: ExplainCase) -> tuple[list[TextAttribution], Decomposition]:
            attributions = client.attribute_latents(
                case.sae_id, case.image, list(PROMPTS), top_n=TOP_LATENTS, patch_maps=case.patches
            )
            return attributions, client.decompose(case.sae.model_id, case.image, PROMPTS[0])

        async def together(case: ExplainCase) -> None:
            await asyncio.gather(
                aclient.attribute_latents(
                    case.sae_id, case.image, list(PROMPTS), top_n=TOP_LATENTS, patch_maps=case.patches
                ),
                aclient.decompose(case.sae.model_id, case.image, PROMPTS[0]),
            )

        def page(case: ExplainCase, body: bytes, ctype: str) -> Answer:
            answer = web.request("POST", "/ui/explain", body, ctype)
            check_explanation(answer, case)
            return answer

        try:
            for case in cases:
                body, ctype = case.form()
                times: dict[str, list[float]] = {"page_server": [], "page_wall": [], "grpc_sequential": [],
                                                 "grpc_concurrent": [], "render": []}  # fmt: skip
                size = len(page(case, body, ctype).body)  # warm-up, every way once
                sequential(case)
                loop.run(together(case))
                order = ("page", "sequential", "concurrent")
                for r in range(rounds):
                    for step in order[r % 3 :] + order[: r % 3]:
                        if step == "page":
                            answer = page(case, body, ctype)
                            times["page_server"].append(answer.server_ms)
                            times["page_wall"].append(answer.wall_ms)
                        elif step == "sequential":
                            (attributions, decomposition), ms = timed(sequential, case)
                            times["grpc_sequential"].append(ms)
                            times["render"].append(
                                timed(render_explain, case, attributions, decomposition)[1]
                            )
                        else:
                            times["grpc_concurrent"].append(loop.timed(together, case)[1])
                medians = {way: statistics.median(values) for way, values in times.items()}
                rows.append({"sae_id": case.sae_id, "kind": case.kind, "key": case.key,
                             "image_bytes": len(case.jpeg), "page_bytes": size, "rounds": rounds,
                             "times_ms": times, "median_ms": medians})  # fmt: skip
        finally:
            loop.run(aclient.close())
    groups: dict[str, Any] = {}
    for sae_id in SAES:
        for kind in ("upload", "key", "all"):
            mine = [r for r in rows if r["sae_id"] == sae_id and kind in (r["kind"], "all")]
            if not mine:
                continue
            pooled = {way: [t for r in mine for t in r["times_ms"][way]] for way in mine[0]["times_ms"]}
            med = {way: statistics.median(values) for way, values in pooled.items()}
            groups[f"{sae_id} / {kind}"] = {
                "n": len(pooled["page_wall"]),
                "median_ms": med,
                "page_bytes_median": int(statistics.median(r["page_bytes"] for r in mine)),
                "ratio_page_wall_to_grpc_sequential": med["page_wall"] / med["grpc_sequential"],
                "ratio_page_wall_to_grpc_concurrent": med["page_wall"] / med["grpc_concurrent"],
                "ratio_page_server_to_grpc_sequential": med["page_server"] / med["grpc_sequential"],
                "ratio_page_server_to_grpc_concurrent": med["page_server"] / med["grpc_concurrent"],
            }
    return {"cases": rows, "groups": groups}


# --------------------------------------------------------------------------------------------------
# Screenshots.


def screenshots(base: str, index: DemoIndex, directory: Path) -> dict[str, Any]:
    """The SAE list, a latent page of each SAE and an explanation, as PNGs in ``directory``."""
    from playwright.sync_api import sync_playwright

    directory.mkdir(parents=True, exist_ok=True)
    shots: dict[str, Any] = {}
    errors: list[str] = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))

            def save(name: str, what: str) -> None:
                path = directory / f"{name}.png"
                page.screenshot(path=path, full_page=False)
                shots[name] = {"path": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
                               "bytes": path.stat().st_size, "what": what}  # fmt: skip

            page.goto(f"{base}/ui/saes")
            save("saes", "the SAE list")
            latent = index.active_latent
            page.goto(f"{base}/ui/sae/{FINAL_SAE}/latent/{latent}")
            page.wait_for_load_state("load")
            save("latent", f"{FINAL_SAE} latent {latent}")
            patch_latent = selective(index, PATCH_SAE)
            page.goto(f"{base}/ui/sae/{PATCH_SAE}/latent/{patch_latent}")
            page.wait_for_selector("#patch-maps[data-loaded=true]")
            page.wait_for_load_state("networkidle")  # the thumbnails under the maps
            page.evaluate("document.getElementById('top-inputs').previousElementSibling.scrollIntoView()")
            save("patch-latent", f"{PATCH_SAE} latent {patch_latent}: top inputs and patch maps")
            page.goto(f"{base}/ui/explain")
            page.select_option("select[name=sae]", PATCH_SAE)
            jpeg = index.jpegs[7]
            page.set_input_files(
                "input[name=image]", {"name": "upload.jpg", "mimeType": "image/jpeg", "buffer": jpeg}
            )
            page.fill("textarea[name=prompts]", "\n".join(PROMPTS))
            page.click("#explain-form button")
            page.wait_for_selector("#steering[data-updates='1']")
            save(
                "explain", f"an uploaded image ({index.keys[7]}) explained with {PATCH_SAE}, steering loaded"
            )
            context.close()
        finally:
            browser.close()
    if errors:
        raise RuntimeError(f"console errors in the screenshot pages: {errors}")
    return shots


# --------------------------------------------------------------------------------------------------
# Report.


def loadavg(values: list[float] | tuple[float, ...]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def explain_verdict(sae_id: str, group: dict[str, Any]) -> str:
    """Page wall time against the sequential and the concurrent calls, each met when at most 1."""

    def met(ratio: float) -> str:
        return f"**{ratio:.2f}** ({'met' if ratio <= 1 else 'NOT met'})"

    return (
        f"{sae_id}: page wall / the calls one after the other "
        f"{met(group['ratio_page_wall_to_grpc_sequential'])}, / the calls together "
        f"{met(group['ratio_page_wall_to_grpc_concurrent'])} (server time / together "
        f"{group['ratio_page_server_to_grpc_concurrent']:.2f}; rendering alone "
        f"{group['median_ms']['render']:.1f} ms)"
    )


def markdown(r: dict[str, Any]) -> str:
    lat, ex = r["latent_pages"], r["explain"]
    load = r["load_average"]
    steal = r["cpu_steal"]
    names = {"page_server": "page, server time (Server-Timing app;dur)",
             "page_wall": "page, client wall time (request to body read)",
             "grpc_sequential": "gRPC port 9000: LatentInfo then TopActivations",
             "grpc_concurrent": "gRPC port 9000: both at once (AsyncClient, gather)",
             "direct_sequential": "gRPC direct feature port: LatentInfo then TopActivations",
             "redis_lookups": "Redis lookups alone, in process (FeatureLookups top + stats)",
             "render": "rendering alone: latent.html from the gRPC answers, in this process"}  # fmt: skip
    verdict = []
    for sae_id, got in lat.items():
        s = got["page_server"]
        verdict.append(
            f"{sae_id}: p50 **{s['p50_ms']:.1f} ms** ({'met' if got['goal_met_p50'] else 'NOT met'}), "
            f"p99 **{s['p99_ms']:.1f} ms** ({'met' if got['goal_met_p99'] else 'NOT met'})"
        )
    lines = [
        "# Web pages at /ui: latent pages from the cache, explain requests",
        "",
        f"Command: `{r['command']}` at commit {r['commit']} ({r['total_s'] / 60:.1f} min; the app answered "
        f"`/ui/saes` {r['startup_s']:.0f} s after the start). Machine: {r['machine']['cpus']} shared CPU cores, "
        f"{r['machine']['gpu']}; Ray (4 logical CPUs), every replica (the one-machine options of `cliplens "
        "serve`), Redis, chromium and this client on those cores. Load average (1 / 5 / 15 min): before the "
        f"latent pages {loadavg(load['before'])}, after them {loadavg(load['after_latent_pages'])}, after the "
        f"explain requests {loadavg(load['after_explain'])}; CPU steal during the measurements "
        f"{'not measured' if steal is None else format(steal, '.1%')}.",
        "",
        "Pages fetched with `http.client` on one keep-alive connection to Serve's HTTP proxy, one request at "
        "a time; the page's HTML only (no thumbnails, CSS or script). Server time: the `Server-Timing: "
        "app;dur` header, time inside the ingress replica's HTTP handler (the page's calls in process, "
        "rendering); wall time adds the HTTP proxy and the hop to the replica.",
        "",
        f"## Latent page from the cache (goal: server time <= {GOAL_MS:.0f} ms)",
        "",
        "; ".join(verdict) + ".",
        "",
        f"`GET /ui/sae/<sae>/latent/<n>`: {next(iter(lat.values()))['requests']} requests per SAE cycling over "
        f"{len(next(iter(lat.values()))['latents'])} latents with top inputs, after a warm-up pass over them "
        "(every way once). Every page said `Statistics from the cache (Redis), top inputs from the cache "
        "(Redis)` (checked on each answer). The page makes ListSaes, then LatentInfo (Redis, plus labels and "
        f"neighbours from the Attributor) and TopActivations (Redis, k = {TOP_K}) concurrently, in process. "
        "In turn with each page request, for the same latent: the rows below it.",
        "",
    ]
    for sae_id, got in lat.items():
        lines += [
            f"### {sae_id} (median page {got['page_bytes_median'] / 1024:.0f} KiB)",
            "",
            "| way | p50 ms | p90 ms | p99 ms | max ms | mean ms |",
            "|---|---|---|---|---|---|",
            *(
                f"| {names[way]} | {got[way]['p50_ms']:.2f} | {got[way]['p90_ms']:.2f} | {got[way]['p99_ms']:.2f} "
                f"| {got[way]['max_ms']:.2f} | {got[way]['mean_ms']:.2f} |"
                for way in names
            ),
            "",
            f"Page server p50 / gRPC pair (sequential) p50: **{got['ratio_page_server_p50_to_grpc_sequential_p50']:.2f}**; "
            f"page wall p50 / gRPC pair (sequential) p50: **{got['ratio_page_wall_p50_to_grpc_sequential_p50']:.2f}**; "
            f"page wall p50 / gRPC pair (concurrent) p50: {got['ratio_page_wall_p50_to_grpc_concurrent_p50']:.2f}.",
            "",
        ]
    lines += [
        "## Explain: the page versus the gRPC calls behind it (goal: no more than those calls)",
        "",
        "; ".join(explain_verdict(sae_id, ex["groups"][f"{sae_id} / all"]) for sae_id in SAES) + ".",
        "",
        f"`POST /ui/explain` (multipart: SAE, image, prompts {' / '.join(repr(p) for p in PROMPTS)}) for "
        f"{r['sizes']['images']} images, each uploaded and as a data-set key, with both SAEs; "
        f"{r['sizes']['explain_rounds']} rounds each after one warm-up of every way. Behind the page: "
        f"AttributeLatents (top {TOP_LATENTS}, patch maps for the patch SAE) and Decompose of the first prompt, "
        "concurrently in process (and ListSaes before them). Baselines through port 9000: the two calls one "
        "after the other (summed) and together (AsyncClient, gather). In each round page, sequential and "
        "concurrent run in turn, the order rotating. Medians of every request of the group:",
        "",
        "| SAE / image | n | page wall ms | page server ms | gRPC sequential ms | gRPC concurrent ms | "
        "page wall / sequential | page wall / concurrent | page server / concurrent | rendering alone ms | "
        "page KiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {name} | {g['n']} | {g['median_ms']['page_wall']:.1f} | {g['median_ms']['page_server']:.1f} | "
            f"{g['median_ms']['grpc_sequential']:.1f} | {g['median_ms']['grpc_concurrent']:.1f} | "
            f"**{g['ratio_page_wall_to_grpc_sequential']:.2f}** | **{g['ratio_page_wall_to_grpc_concurrent']:.2f}** | "
            f"{g['ratio_page_server_to_grpc_concurrent']:.2f} | {g['median_ms']['render']:.1f} | "
            f"{g['page_bytes_median'] / 1024:.0f} |"
            for name, g in ex["groups"].items()
        ),
        "",
        "Rendering alone: explain.html from the sequential gRPC answers of the same round, rendered in this "
        "process with the ingress's templates (the SVG plots: layer bars, head grid, patch heatmaps; for the "
        "patch SAE a heatmap per latent and prompt). An uploaded image travels in the form and back in the "
        "page: the explanation embeds it once as a `data:` URI (an `<img>` and an SVG `<symbol>` that every heatmap overlay uses).",
        "",
    ]
    if r["screenshots"]:
        lines += [
            "## Screenshots",
            "",
            f"Chromium (Playwright), viewport {VIEWPORT['width']}x{VIEWPORT['height']}:",
            "",
            *(
                f"- `{s['path']}`: {s['what']} ({s['bytes'] / 1024:.0f} KiB)"
                for s in r["screenshots"].values()
            ),
            "",
        ]
    lines += [f"Run: `{r['command']}`"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="latent page requests per SAE")
    parser.add_argument("--latents", type=int, default=50, help="latents per SAE the requests cycle over")
    parser.add_argument("--images", type=int, default=3, help="explained images (each uploaded and as a key)")
    parser.add_argument("--explain-rounds", type=int, default=8, help="rounds per explain case")
    parser.add_argument("--settle-s", type=float, default=15.0, help="idle time once the pages answer")
    parser.add_argument(
        "--screenshots", type=Path, default=RESULTS / "web", help="folder of the PNGs (default %(default)s)"
    )
    parser.add_argument("--no-screenshots", action="store_true", help="skip them (no chromium needed)")
    parser.add_argument(
        "--out", type=Path, default=RESULTS / "web_pages.md", help="the .md (.json beside it)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 20 requests over 5 latents, 1 image, 2 rounds"
    )
    args = parser.parse_args()
    if args.quick:
        args.requests, args.latents, args.images, args.explain_rounds, args.settle_s = 20, 5, 1, 2, 2.0
    return args


def main() -> None:
    args = parse_args()
    started = time.monotonic()
    command = shlex.join([".venv/bin/python", "benchmarks/web_pages.py", *sys.argv[1:]])
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    loop = Loop()
    try:
        with demo_stack(["demo"]) as stack:
            running = stack.start(local_options(0))
            base = f"http://127.0.0.1:{stack.ports.http}"
            web = Http(stack.ports.http)
            try:
                up_s = time.monotonic() - started
                up_s += wait_for_pages(web)
                time.sleep(args.settle_s)
                index = stack.index
                with Client(running.address, app=APP) as client:
                    served = {sae.id: sae for sae in client.list_saes()}
                latents = {sae_id: spread(with_top_inputs(index, sae_id), args.latents) for sae_id in SAES}
                load_before, cpu_before = os.getloadavg(), cpu_times()
                latent_pages = measure_latent_pages(web, stack, running, loop, latents, args.requests)
                load_latent = os.getloadavg()
                picks = spread(list(range(len(index.keys))), args.images)
                cases = [
                    ExplainCase(served[sae_id], kind, index.keys[i], index.jpegs[i])
                    for sae_id in SAES
                    for i in picks
                    for kind in ("upload", "key")
                ]
                explain = measure_explain(web, running, loop, cases, args.explain_rounds)
                load_explain, steal = os.getloadavg(), steal_share(cpu_before, cpu_times())
                shots = {} if args.no_screenshots else screenshots(base, index, args.screenshots)
                reconnects = web.reconnects
            finally:
                web.close()
    finally:
        loop.close()
    import torch

    gpu = (
        f"a GPU ({torch.cuda.get_device_name(0)}) the replicas do not use"
        if torch.cuda.is_available()
        else "no GPU"
    )
    result: dict[str, Any] = {
        "command": command,
        "commit": head.stdout.strip() or "unknown",
        "machine": {"cpus": os.cpu_count(), "gpu": gpu},
        "sizes": {
            "requests": args.requests,
            "latents": args.latents,
            "images": args.images,
            "explain_rounds": args.explain_rounds,
            "settle_s": args.settle_s,
        },
        "startup_s": up_s,
        "total_s": time.monotonic() - started,
        "load_average": {
            "before": load_before,
            "after_latent_pages": load_latent,
            "after_explain": load_explain,
            "end": os.getloadavg(),
        },
        "cpu_steal": steal,
        "http_reconnects": reconnects,
        "goal_ms": GOAL_MS,
        "latent_pages": latent_pages,
        "explain": explain,
        "screenshots": shots,
    }
    write_results(args.out.stem, result, markdown(result), args.out.parent)


if __name__ == "__main__":
    main()
