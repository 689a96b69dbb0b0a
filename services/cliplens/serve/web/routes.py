"""The HTTP routes of the web pages (FastAPI, on Serve's HTTP proxy through the ingress deployment).

Every route reaches this replica's :class:`WebUi` through :func:`current_ui` (a FastAPI dependency).
Pages need a login session when auth is on (:mod:`cliplens.serve.web.sessions`); failures become an
error page (or JSON under ``/ui/api``) with the HTTP status of their gRPC code and the API's message.
"""

from __future__ import annotations

import base64
import hashlib
import math
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from cliplens.serve.web.pages import upload_limit
from cliplens.serve.web.sessions import COOKIE
from cliplens.serve.web.ui import WebError, WebUi, data_uri, http_error, render
from cliplens_client import LatentEdit, ObjectKey
from cliplens_client.inputs import ImageInput

PREFIX = "/ui"
STATIC = resources.files("cliplens.serve.web") / "static"
STATIC_FILES = {"app.css": "text/css", "app.js": "text/javascript"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

web_app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


def current_ui() -> WebUi:
    """This replica's web UI: the ingress instance Serve is running holds it."""
    from ray import serve

    ui: WebUi = getattr(serve.get_replica_context().servable_object, "web")  # noqa: B009 (typed here)
    return ui


Ui = Annotated[WebUi, Depends(current_ui)]


class LoginRequiredError(Exception):
    """The request has no valid session."""


def logged_in(request: Request, ui: Ui) -> WebUi:
    if not ui.sessions.valid(request.cookies.get(COOKIE)):
        raise LoginRequiredError
    return ui


Page = Annotated[WebUi, Depends(logged_in)]


@web_app.middleware("http")
async def frame(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Security headers, and the server time of every answer (``Server-Timing: app;dur=<ms>``)."""
    start = time.perf_counter()
    response = await call_next(request)
    response.headers.update(SECURITY_HEADERS)
    response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - start) * 1e3:.2f}"
    return response


@web_app.exception_handler(LoginRequiredError)
async def _login_required(request: Request, exc: LoginRequiredError) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": "log in first: no valid session"}, status_code=401)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{_root(request)}{PREFIX}/login?next={quote(target)}", status_code=303)


@web_app.exception_handler(Exception)
async def _failed(request: Request, exc: Exception) -> Response:
    status, message = http_error(exc)
    return await _error(request, status, message)


@web_app.exception_handler(HTTPException)
async def _http_failed(request: Request, exc: HTTPException) -> Response:
    message = "no such page" if exc.status_code == 404 else str(exc.detail)
    return await _error(request, exc.status_code, message)


@web_app.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> Response:
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error['loc'][1:])}: {error['msg']}" for error in exc.errors()
    )
    return await _error(request, 404 if request.method == "GET" else 400, problems)


async def _error(request: Request, status: int, message: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": message}, status_code=status)
    return await render(request, "error.html", status_code=status, status=status, message=message)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith(f"{_root(request)}{PREFIX}/api/")


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


@web_app.get(PREFIX)
@web_app.get(f"{PREFIX}/")
async def home(request: Request) -> Response:
    return RedirectResponse(f"{_root(request)}{PREFIX}/saes", status_code=303)


@web_app.get(f"{PREFIX}/login")
async def login_form(request: Request, ui: Ui, next: str = "") -> Response:
    if not ui.sessions.required:
        return RedirectResponse(f"{_root(request)}{PREFIX}/saes", status_code=303)
    return await render(request, "login.html", next=_local(request, next), failed=False)


@web_app.post(f"{PREFIX}/login")
async def login(request: Request, ui: Ui) -> Response:
    form = await request.form(max_files=0, max_fields=4)
    token, target = str(form.get("token", "")), _local(request, str(form.get("next", "")))
    cookie = ui.sessions.open(token.strip())
    if cookie is None:
        return await render(request, "login.html", status_code=401, next=target, failed=True)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=int(ui.sessions.lifetime_s),
        path=f"{_root(request)}{PREFIX}",
        secure=True,
        httponly=True,
        samesite="strict",
    )
    return response


@web_app.post(f"{PREFIX}/logout")
async def logout(request: Request) -> Response:
    response = RedirectResponse(f"{_root(request)}{PREFIX}/login", status_code=303)
    response.delete_cookie(COOKIE, path=f"{_root(request)}{PREFIX}", secure=True, httponly=True)
    return response


def _local(request: Request, target: str) -> str:
    """``target`` when it is a path of these pages, else the SAE list (no open redirects)."""
    home = f"{_root(request)}{PREFIX}/saes"
    if target.startswith(f"{_root(request)}{PREFIX}/") and not target.startswith("//") and "\\" not in target:
        return target
    return home


@web_app.get(f"{PREFIX}/saes")
async def saes(request: Request, ui: Page) -> Response:
    return await render(request, "saes.html", saes=await ui.pages.saes())


@web_app.get(PREFIX + "/sae/{sae_id}")
async def sae(request: Request, ui: Page, sae_id: str, page: int = 0) -> Response:
    info = await ui.pages.sae(sae_id)
    per_page = ui.settings.latents_per_page
    pages = max(1, math.ceil(info.d_sae / per_page))
    if not 0 <= page < pages:
        raise WebError(404, f"SAE '{sae_id}' has latent pages 0..{pages - 1}, not {page}")
    latents = range(page * per_page, min(info.d_sae, (page + 1) * per_page))
    return await render(request, "sae.html", sae=info, latents=latents, page=page, pages=pages)


@web_app.get(PREFIX + "/sae/{sae_id}/latent/{latent}")
async def latent(request: Request, ui: Page, sae_id: str, latent: int) -> Response:
    view = await ui.pages.latent(sae_id, latent)
    return await render(request, "latent.html", view=view, thumbnails=ui.thumbnails)


@web_app.get(PREFIX + "/sae/{sae_id}/latent/{latent}/patches")
async def patch_maps(request: Request, ui: Page, sae_id: str, latent: int) -> Response:
    maps = await ui.pages.patch_maps(sae_id, latent)
    return await render(request, "patch_maps.html", in_thread=True, maps=maps, latent=latent)


@web_app.get(f"{PREFIX}/search")
async def search(request: Request, ui: Page, sae: str = "", q: str = "", key: str = "") -> Response:
    saes = await ui.pages.saes()
    matches, fired = None, None
    if sae and q:
        matches = await ui.pages.calls.search_latents(sae, q, top_n=ui.settings.top_latents)
    elif sae and key:
        fired = await ui.pages.latents_of_input(sae, key)
    return await render(
        request,
        "search.html",
        saes=saes,
        sae=sae,
        q=q,
        key=key,
        matches=matches,
        fired=fired,
        thumbnails=ui.thumbnails,
    )


@web_app.get(f"{PREFIX}/explain")
async def explain_form(request: Request, ui: Page, sae: str = "", key: str = "") -> Response:
    return await render(
        request, "explain_form.html", saes=await ui.pages.saes(), sae=sae, key=key, prompts=""
    )


@web_app.post(f"{PREFIX}/explain")
async def explain(request: Request, ui: Page) -> Response:
    limit = _within_upload_limit(request, ui, upload_limit(ui.limits))
    form = await request.form(max_files=1, max_fields=8)
    sae_id, key = str(form.get("sae", "")), str(form.get("key", "")).strip()
    prompts = [line.strip() for line in str(form.get("prompts", "")).splitlines() if line.strip()]
    upload = form.get("image")
    data = await upload.read(limit + 1) if isinstance(upload, UploadFile) else b""
    if len(data) > ui.limits.max_image_bytes:
        raise WebError(413, f"upload is over {ui.limits.max_image_bytes:,} bytes, the image limit")
    if bool(data) == bool(key):
        raise WebError(400, "give either an image file or a data-set key, not both and not neither")
    if not prompts:
        raise WebError(400, "give at least one prompt, one per line")
    image: ImageInput = data if data else ObjectKey(key)
    explanation = await ui.pages.explain(sae_id, image, prompts)
    image_href = data_uri(data) if data else f"{_root(request)}{PREFIX}/images/{quote(key)}"
    return await render(
        request, "explain.html", in_thread=True, explanation=explanation, key=key, image_href=image_href
    )


def _within_upload_limit(request: Request, ui: WebUi, limit: int) -> int:
    """``limit``; raises 413 before the body is read when its declared length is larger."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise WebError(
            413, f"upload is {int(length):,} bytes; images may be at most {ui.limits.max_image_bytes:,}"
        )
    return limit


class SteerBody(BaseModel):
    """``POST /ui/api/steer``: clamp latents of an image (a data-set key or base64 bytes)."""

    sae_id: str
    key: str = ""
    data: str = Field(default="", description="base64 of the image file, when there is no key")
    edits: dict[int, float]
    class_names: list[str] = []


@web_app.post(f"{PREFIX}/api/steer")
async def steer(request: Request, ui: Page) -> dict[str, Any]:
    _within_upload_limit(request, ui, upload_limit(ui.limits) * 4 // 3)  # the image in base64
    body = SteerBody.model_validate_json(await request.body())
    try:
        data = base64.b64decode(body.data, validate=True)
    except ValueError:
        raise WebError(400, "data: not base64") from None
    if bool(data) == bool(body.key):
        raise WebError(400, "give either key or data, not both and not neither")
    image: ImageInput = data if data else ObjectKey(body.key)
    edits = [LatentEdit(latent, "clamp", value) for latent, value in body.edits.items()]
    steering = await ui.pages.steer(body.sae_id, image, edits, body.class_names)
    return {
        "classes": [{"name": c.class_name, "before": c.before, "after": c.after} for c in steering.classes]
    }


@web_app.get(PREFIX + "/images/{key:path}")
async def image(request: Request, ui: Page, key: str) -> Response:
    thumbnail = await ui.pages.thumbnail(key)
    etag = '"' + hashlib.sha256(thumbnail.data).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": f"{ui.cache_scope}, max-age=86400"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(thumbnail.data, media_type=thumbnail.media_type, headers=headers)


@web_app.get(PREFIX + "/static/{name}")
async def static(name: str) -> Response:
    if name not in STATIC_FILES:
        raise WebError(404, f"no static file '{name}'")
    body = (STATIC / name).read_bytes()
    return Response(body, media_type=STATIC_FILES[name], headers={"Cache-Control": "public, max-age=3600"})
