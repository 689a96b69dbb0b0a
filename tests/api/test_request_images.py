"""Images named by key in the image bucket, including an image folder's input ids (no suffix)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cliplens.core.errors import NotFoundError
from cliplens.serve.request_checks import RequestImages
from cliplens.serve.settings import Limits
from cliplens.store import LocalStore
from cliplens_client.v1 import common_pb2
from image_bytes import png


def keyed(key: str) -> common_pb2.Image:
    return common_pb2.Image(object_key=key)


def test_keys_and_folder_input_ids_find_their_files(tmp_path: Path) -> None:
    bucket = LocalStore(tmp_path)
    bucket.put_bytes("cat/a.png", png(8))
    bucket.put_bytes("dog/b.PNG", png(12))
    images = RequestImages(Limits(), bucket)
    assert images.read("image", keyed("cat/a.png")) == png(8)
    assert images.read("image", keyed("cat/a")) == png(8)  # the input id `cliplens index` records
    assert images.read("image", keyed("dog/b")) == png(12)
    with pytest.raises(NotFoundError, match="no image 'cat/c' in the image bucket"):
        images.read("image", keyed("cat/c"))
