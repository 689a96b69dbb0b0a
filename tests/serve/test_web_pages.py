"""The web pages at /ui, in a real browser: Playwright drives Debian's chromium (`make browser`) against
the served demo index. Every test fails on a console error it did not expect, and saves screenshots
under its temporary directory. What the pages show is compared with the gRPC API's answers."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright
from serve_setup import AUTH_APP, TOKEN, ServeApp

from cliplens.demo.catalogue import FINAL_SAE, PATCH_SAE
from cliplens_client import Client, LatentEdit, ObjectKey

CHROMIUM = "/usr/bin/chromium"
CAT_AND_DOG = "a photo of a cat\na photo of a dog"


@dataclass
class Console:
    """Console errors and uncaught page errors; ``allowed`` are patterns a test expects."""

    errors: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)

    def allow_status(self, status: int) -> None:
        self.allowed.append(f"status of {status}")

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(pattern in e for pattern in self.allowed)]


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    yield browser
    browser.close()


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def page(browser: Browser, console: Console, tmp_path: Path) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            console.errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: console.errors.append(f"uncaught: {error}"))
    page.on("dialog", lambda dialog: console.errors.append(f"dialog opened: {dialog.message}"))
    yield page
    page.screenshot(path=tmp_path / "last.png", full_page=True)
    context.close()
    assert not console.unexpected(), console.unexpected()


@pytest.fixture(scope="module")
def ui(serve_app: ServeApp) -> str:
    return f"http://127.0.0.1:{serve_app.http_port}/ui"


def shot(page: Page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=tmp_path / f"{name}.png", full_page=True)
    assert (tmp_path / f"{name}.png").stat().st_size > 1000


def cell_texts(page: Page, selector: str, column: int) -> list[str]:
    return [
        text.strip() for text in page.locator(f"{selector} tbody tr td:nth-child({column})").all_inner_texts()
    ]


def test_the_sae_list_shows_every_served_sae_and_links_to_its_latents(
    page: Page, ui: str, client: Client, tmp_path: Path
) -> None:
    page.goto(f"{ui}/")
    assert page.url == f"{ui}/saes"
    served = {sae.id: sae for sae in client.list_saes()}
    assert cell_texts(page, "#saes", 1) == sorted(served)
    row = page.locator("#saes tbody tr", has_text=FINAL_SAE)
    assert row.locator("td").all_inner_texts()[1:5] == ["demo", "final", "topk", "256"]
    assert "k = 8" in row.locator("td").nth(5).inner_text()
    patch_row = page.locator("#saes tbody tr", has_text=PATCH_SAE)
    assert "l1_coeff" in patch_row.locator("td").nth(5).inner_text()
    shot(page, tmp_path, "saes")
    page.click(f"text={FINAL_SAE}")
    assert page.url == f"{ui}/sae/{FINAL_SAE}"
    assert page.locator("#latent-links a").count() == 128
    page.click("text=next →")
    assert page.locator("#latent-links a").first.inner_text() == "128"
    page.click("#latent-links a >> text=200")
    assert page.url == f"{ui}/sae/{FINAL_SAE}/latent/200"


def test_a_latent_page_shows_what_the_api_serves(
    page: Page, ui: str, client: Client, serve_app: ServeApp, tmp_path: Path
) -> None:
    latent = serve_app.index.active_latent
    response = page.goto(f"{ui}/sae/{FINAL_SAE}/latent/{latent}")
    assert response is not None and response.status == 200
    assert re.fullmatch(r"app;dur=[0-9.]+", response.headers["server-timing"])
    info, top = client.latent_info(FINAL_SAE, latent), client.top_activations(FINAL_SAE, latent)
    assert cell_texts(page, "#labels", 1) == [label.text for label in info.labels]
    assert "from the cache (Redis)" in page.locator("#source").inner_text()
    assert page.locator("#stats").inner_text().split()[2] == f"{info.firing_rate:.4f}"
    counts = dict(
        zip(cell_texts(page, "#label-counts", 1), cell_texts(page, "#label-counts", 2), strict=True)
    )
    assert counts == {name: str(n) for name, n in info.label_counts.items()}
    bars = page.locator("#histogram svg rect")
    assert bars.count() == len(info.counts)
    images = page.locator("#top-inputs img")
    assert [images.nth(i).get_attribute("alt") for i in range(images.count())] == [
        item.input_id for item in top.inputs
    ]
    page.wait_for_load_state("load")  # every image has loaded or failed
    assert page.locator("#top-inputs img").evaluate_all("l => l.every(i => i.naturalWidth > 0)")
    neighbours = page.locator("#neighbours a")
    assert [neighbours.nth(i).inner_text() for i in range(neighbours.count())] == [
        f"latent {n.latent}" for n in info.neighbours
    ]
    shot(page, tmp_path, "latent")
    first = info.neighbours[0].latent
    neighbours.first.click()
    assert page.url == f"{ui}/sae/{FINAL_SAE}/latent/{first}"
    assert page.locator("h1").inner_text().startswith(f"Latent {first}")


def test_a_patch_latent_page_overlays_each_top_image_with_a_scaled_heatmap(
    page: Page, ui: str, client: Client, serve_app: ServeApp, tmp_path: Path
) -> None:
    latent = 3
    top = client.top_activations(PATCH_SAE, latent)
    page.goto(f"{ui}/sae/{PATCH_SAE}/latent/{latent}")
    page.wait_for_selector("#patch-maps[data-loaded=true]")
    figures = page.locator("#patch-maps svg")
    assert figures.count() == len(top.inputs) > 0
    codes = client.encode(PATCH_SAE, images=[ObjectKey(top.inputs[0].input_id)])
    expected = codes.to_dense()[0, :, latent]
    cells = figures.first.locator("rect[data-value]")
    assert cells.count() == expected.size
    shown = [float(cells.nth(i).get_attribute("data-value") or "nan") for i in range(cells.count())]
    assert shown == pytest.approx(expected.tolist(), rel=1e-3, abs=1e-3)
    legend = figures.first.text_content() or ""
    assert f"{expected.max():.3g}" in legend  # the colour bar's top end names the largest value
    shot(page, tmp_path, "patch-latent")


def test_search_by_text_and_by_data_set_key(
    page: Page, ui: str, client: Client, serve_app: ServeApp, tmp_path: Path
) -> None:
    page.goto(f"{ui}/search")
    form = page.locator("#search-text")
    form.locator("select").select_option(FINAL_SAE)
    form.locator("input[name=q]").fill("a photo of a cat")
    form.locator("button").click()
    expected = client.search_latents(FINAL_SAE, "a photo of a cat", top_n=8)
    assert cell_texts(page, "#results", 1) == [str(m.latent) for m in expected.matches]
    shot(page, tmp_path, "search-text")
    key = serve_app.index.keys[5]
    form = page.locator("#search-key")
    form.locator("select").select_option(PATCH_SAE)
    form.locator("input[name=key]").fill(key)
    form.locator("button").click()
    strongest = client.encode(PATCH_SAE, images=[ObjectKey(key)]).to_dense()[0].max(axis=0)
    shown = cell_texts(page, "#results", 1)
    assert len(shown) == min(8, int((strongest > 0).sum()))
    assert [float(strongest[int(n)]) for n in shown] == sorted(strongest.tolist(), reverse=True)[: len(shown)]
    page.locator("#results a").first.click()
    assert page.url == f"{ui}/sae/{PATCH_SAE}/latent/{shown[0]}"


def test_explain_an_uploaded_image_then_steer_it(
    page: Page, ui: str, client: Client, serve_app: ServeApp, tmp_path: Path
) -> None:
    jpeg = serve_app.index.jpegs[7]
    page.goto(f"{ui}/explain")
    page.select_option("select[name=sae]", PATCH_SAE)
    page.set_input_files("input[name=image]", {"name": "mine.jpg", "mimeType": "image/jpeg", "buffer": jpeg})
    page.fill("textarea[name=prompts]", CAT_AND_DOG)
    page.click("#explain-form button")
    expected = client.attribute_latents(PATCH_SAE, jpeg, CAT_AND_DOG.splitlines(), top_n=8, patch_maps=True)
    for number, text in enumerate(expected):
        section = page.locator(f"#prompt-{number}")
        assert f"score {text.score:+.4f}" in section.locator("h2").inner_text()
        assert f"SAE error share {100 * text.error_share:.1f}%" in section.locator("h2").inner_text()
        assert cell_texts(page, f"#prompt-{number} table", 1)[:-1] == [
            str(lat.latent) for lat in text.latents
        ]
        assert section.locator("figure.patch-map svg").count() == len(text.latents)
    decomposition = client.decompose("demo", jpeg, "a photo of a cat")
    assert f"score {decomposition.score:+.4f}" in page.locator("h2", has_text="Decomposition").inner_text()
    assert page.locator("#heads rect[data-value]").count() == sum(
        len(layer.heads) for layer in decomposition.layers
    )
    assert page.locator("#decomposition-patches svg rect[data-value]").count() > 0
    assert page.content().count("data:image/jpeg;base64,") == 2  # the upload: one <img>, one <symbol>
    shot(page, tmp_path, "explain")

    steering = page.locator("#steering")
    page.wait_for_selector("#steering[data-updates='1']")
    before = cell_texts(page, "#steer-table", 2)
    after = cell_texts(page, "#steer-table", 3)
    assert cell_texts(page, "#steer-table", 1) == CAT_AND_DOG.splitlines()
    slider = steering.locator("input.steer").first
    latent, top = int(slider.get_attribute("data-latent") or -1), slider.get_attribute("max") or ""
    slider.fill(top)
    page.wait_for_selector("#steering[data-updates='2']")
    assert cell_texts(page, "#steer-table", 2) == before  # before the edit: unchanged
    moved = cell_texts(page, "#steer-table", 3)
    assert moved != after
    edits = [LatentEdit(latent, "clamp", float(top))] + [
        LatentEdit(int(s.get_attribute("data-latent") or -1), "clamp", float(s.input_value()))
        for s in steering.locator("input.steer").all()[1:]
    ]
    direct = client.steer(PATCH_SAE, jpeg, edits, class_names=CAT_AND_DOG.splitlines())
    assert moved == [f"{c.after:.4f}" for c in direct.classes]
    shot(page, tmp_path, "steered")


def test_explain_a_data_set_image_picked_from_a_latent_page(
    page: Page, ui: str, serve_app: ServeApp, tmp_path: Path
) -> None:
    page.goto(f"{ui}/sae/{FINAL_SAE}/latent/{serve_app.index.active_latent}")
    page.locator("#top-inputs a", has_text="explain").first.click()
    assert page.locator("input[name=key]").input_value() != ""
    page.fill("textarea[name=prompts]", CAT_AND_DOG)
    page.click("#explain-form button")
    assert page.locator("#prompt-1 table tbody tr").count() >= 1
    page.wait_for_selector("#steering[data-updates='1']")
    assert page.locator("img.subject").evaluate("i => i.naturalWidth") > 0


def test_bad_input_gets_a_clear_message_and_its_status(
    page: Page, ui: str, console: Console, serve_app: ServeApp
) -> None:
    for status in (400, 404, 413):
        console.allow_status(status)
    cases = {
        f"{ui}/sae/no-such-sae/latent/1": (404, "unknown SAE 'no-such-sae'"),
        f"{ui}/sae/{FINAL_SAE}/latent/99999": (404, "has no latent 99999"),
        f"{ui}/sae/{FINAL_SAE}/latent/abc": (404, "latent: Input should be a valid integer"),
        f"{ui}/no/such/page": (404, "no such page"),
        f"{ui}/images/cifar10-test/missing": (404, "no image 'cifar10-test/missing'"),
    }
    for url, (status, message) in cases.items():
        response = page.goto(url)
        assert response is not None and response.status == status, url
        assert message in page.locator("#error-message").inner_text(), url

    def explain_upload(name: str, body: bytes, prompts: str = CAT_AND_DOG) -> int:
        page.goto(f"{ui}/explain")
        page.select_option("select[name=sae]", FINAL_SAE)
        page.set_input_files("input[name=image]", {"name": name, "mimeType": "image/jpeg", "buffer": body})
        page.fill("textarea[name=prompts]", prompts)
        with page.expect_navigation() as navigation:
            page.click("#explain-form button")
        response = navigation.value
        assert response is not None
        return response.status

    assert explain_upload("notes.jpg", b"these are not image bytes" * 10) == 400
    assert "is not a JPEG, PNG or WebP" in page.locator("#error-message").inner_text()
    limit = serve_app.settings.limits.max_image_bytes
    assert explain_upload("huge.jpg", b"\xff\xd8\xff" + b"\0" * (limit * 2)) == 413
    assert f"images may be at most {limit:,}" in page.locator("#error-message").inner_text()

    script = "<script>alert('prompt')</script>"
    assert explain_upload("ok.jpg", serve_app.index.jpegs[0], f"a photo of a cat\n{script}") == 200
    assert script in page.locator("#prompt-1 h2").inner_text()  # shown as text ...
    assert script not in page.content()  # ... never as markup
    assert "&lt;script&gt;" in page.content()


def test_thumbnails_carry_caching_headers(ui: str, serve_app: ServeApp) -> None:
    url = f"{ui}/images/{serve_app.index.keys[0]}"
    with urllib.request.urlopen(url) as response:
        assert response.headers["Cache-Control"] == "public, max-age=86400"
        etag, body = response.headers["ETag"], response.read()
    assert body == serve_app.index.jpegs[0]  # small JPEGs are served as stored
    request = urllib.request.Request(url, headers={"If-None-Match": etag})
    with pytest.raises(urllib.error.HTTPError) as unchanged:
        urllib.request.urlopen(request)
    assert unchanged.value.code == 304


def test_login_with_and_without_a_valid_token(
    page: Page, serve_app: ServeApp, console: Console, tmp_path: Path
) -> None:
    console.allow_status(401)
    root = f"http://127.0.0.1:{serve_app.http_port}/{AUTH_APP}/ui"
    # The auth app's ingress takes one call and queues one (tests/serve/conftest.py), so the page
    # visited has no image tiles; a stylesheet or script fetched while the page itself is still being
    # answered may still be shed (503). Only those may be, and nothing asserted here needs them.
    console.allow_status(503)
    shed: list[str] = []
    page.on("response", lambda response: shed.append(response.url) if response.status == 503 else None)
    page.goto(f"{root}/sae/{FINAL_SAE}")
    assert page.url.startswith(f"{root}/login?next=")
    shot(page, tmp_path, "login")
    page.fill("input[name=token]", "not-the-token")
    with page.expect_navigation() as navigation:
        page.click("button[type=submit]")
    assert navigation.value is not None and navigation.value.status == 401
    assert "not valid" in page.locator("#error-message").inner_text()
    assert page.context.cookies() == []

    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    assert page.url == f"{root}/sae/{FINAL_SAE}"  # back where the login started
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert TOKEN not in cookie["value"]
    assert all(
        a.startswith(f"/{AUTH_APP}/ui/")
        for a in page.locator("a").evaluate_all("l => l.map(a => a.getAttribute('href'))")
    )
    assert page.locator("#latent-links a").count() == 128

    with pytest.raises(urllib.error.HTTPError) as refused:  # no session: the JSON API says 401
        urllib.request.urlopen(urllib.request.Request(f"{root}/api/steer", data=b"{}", method="POST"))
    assert refused.value.code == 401

    page.click("text=Log out")
    assert page.url == f"{root}/login"
    page.goto(f"{root}/saes")
    assert page.url.startswith(f"{root}/login")
    assert all(url.startswith(f"{root}/static/") for url in shed), shed
