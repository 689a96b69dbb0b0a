"""The page templates: every one compiles, and text reaches the page escaped."""

from __future__ import annotations

import pytest

from cliplens.serve.web.ui import TEMPLATES, data_uri, http_error


@pytest.mark.parametrize("name", TEMPLATES.list_templates())
def test_every_template_compiles(name: str) -> None:
    TEMPLATES.get_template(name)


def test_error_pages_escape_their_message() -> None:
    page = TEMPLATES.get_template("error.html").render(
        root="", logged_in=False, status=400, message="<script>alert(1)</script>"
    )
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_failures_map_to_http_statuses_without_internals() -> None:
    from cliplens.core.errors import InvalidInputError, NotFoundError
    from cliplens_client.errors import InvalidRequestError

    assert http_error(NotFoundError("unknown SAE 'x'")) == (404, "unknown SAE 'x'")
    assert http_error(InvalidInputError("texts: too many")) == (400, "texts: too many")
    assert http_error(InvalidRequestError("bad image")) == (400, "bad image")
    status, message = http_error(KeyError("secret internals"))
    assert status == 500 and "secret" not in message


def test_uploads_become_data_uris_of_their_type() -> None:
    assert data_uri(b"\x89PNG\r\n\x1a\nrest").startswith("data:image/png;base64,")
    assert data_uri(b"\xff\xd8\xffrest").startswith("data:image/jpeg;base64,")
    assert data_uri(b"RIFF\0\0\0\0WEBPrest").startswith("data:image/webp;base64,")


def test_without_an_image_bucket_a_latent_page_names_its_inputs_instead_of_broken_images() -> None:
    import numpy as np

    from cliplens.serve.web.pages import LatentView
    from cliplens_client import ActivatingInput, LatentInfo, SaeInfo, TopActivations

    sae = SaeInfo("s", "demo", "resid:2:patches", "relu", 4, 8, "run", {}, True, {"l1_coeff": 0.001})
    info = LatentInfo(
        "s", 3, [], 0.0, 0.0, 0.5, np.array([0.0, 1.0], np.float32), np.array([2]), "redis", False, {}, []
    )
    top = TopActivations("s", 3, [ActivatingInput("cat/one", 1.5, "cat", 2)], "redis", False)
    page = TEMPLATES.get_template("latent.html").render(
        root="", logged_in=False, view=LatentView(sae, info, top), thumbnails=False
    )
    assert '<code class="key">cat/one</code>' in page
    assert "/ui/images/" not in page and "patch-maps" not in page
