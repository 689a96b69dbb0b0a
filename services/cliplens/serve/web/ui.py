"""The web UI of one ingress replica (its pages, sessions and settings), the page renderer, and the
HTTP status of each failure."""

from __future__ import annotations

import asyncio
import base64
import functools

import grpc
from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from pydantic import ValidationError

from cliplens.serve.settings import Limits, WebSettings
from cliplens.serve.status import status_of
from cliplens.serve.web import plots
from cliplens.serve.web.pages import WebPages
from cliplens.serve.web.sessions import COOKIE, Sessions
from cliplens_client import Decomposition
from cliplens_client.errors import InvalidRequestError

HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 503,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
TEMPLATES = Environment(
    loader=PackageLoader("cliplens.serve.web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
)


def layer_rows(decomposition: Decomposition) -> list[tuple[int, float, float]]:
    """(layer, attention, MLP) per block, for :func:`plots.layer_bars`."""
    return [(layer.layer, layer.attention, layer.mlp) for layer in decomposition.layers]


def head_rows(decomposition: Decomposition) -> list[list[float]]:
    """Per block, each head's contribution, for :func:`plots.head_grid`."""
    return [layer.heads.tolist() for layer in decomposition.layers]


TEMPLATES.globals.update(plots=plots, layer_rows=layer_rows, head_rows=head_rows)


class WebError(Exception):
    """A failure that knows its HTTP status (a bad form, a too large upload)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def http_error(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and message shown for ``exc``: the API's message, never internals."""
    if isinstance(exc, WebError):
        return exc.status, exc.message
    if isinstance(exc, InvalidRequestError):
        return 400, str(exc)
    if isinstance(exc, ValidationError):
        return 400, "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
    code, message = status_of(exc)
    return HTTP_STATUS.get(code, 500), message


async def render(
    request: Request, template: str, status_code: int = 200, *, in_thread: bool = False, **context: object
) -> HTMLResponse:
    """A page from ``templates/``, its text escaped; ``root`` prefixes every link. ``in_thread``: for
    pages of many plots, rendered in a worker thread so that they do not hold up the replica's other
    calls (small pages render inline: a thread hop costs more than they do)."""
    root = str(request.scope.get("root_path", "")).rstrip("/")
    page = functools.partial(
        TEMPLATES.get_template(template).render, root=root, logged_in=COOKIE in request.cookies, **context
    )
    body = await asyncio.to_thread(page) if in_thread else page()
    return HTMLResponse(body, status_code=status_code)


def data_uri(data: bytes) -> str:
    """An uploaded image as a ``data:`` URI (its type sniffed from the magic bytes the API checked)."""
    media = (
        "image/png" if data.startswith(b"\x89PNG") else "image/webp" if data[:4] == b"RIFF" else "image/jpeg"
    )
    return f"data:{media};base64,{base64.b64encode(data).decode()}"


class WebUi:
    """What the routes of one replica use."""

    def __init__(self, pages: WebPages, sessions: Sessions, settings: WebSettings, limits: Limits) -> None:
        self.pages, self.sessions, self.settings, self.limits = pages, sessions, settings, limits

    @property
    def thumbnails(self) -> bool:
        """Whether data-set images can be shown: the app has an image bucket."""
        return self.pages.images.bucket is not None

    @property
    def cache_scope(self) -> str:
        """``Cache-Control`` scope of images: shared caches may keep them only when auth is off."""
        return "private" if self.sessions.required else "public"
