"""Recently used text embeddings per model, kept in a replica: common prompts are embedded once.

Attribution requests repeat their prompts ("a photo of a dog", a fixed class list); the cache
holds the unnormalised embeddings of the last ``capacity`` (model, text) pairs and embeds only the
texts it has not seen. Hits and misses are counted in ``cliplens_cache_lookups_total``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor

from cliplens.core.models import LoadedClip
from cliplens.serve.metrics import metrics

CACHE_NAME = "text_embeddings"


class TextEmbeddingCache:
    """LRU of ``(model id, text) -> embedding``; thread-safe; ``capacity`` 0 turns it off."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._rows: OrderedDict[tuple[str, str], Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, clip: LoadedClip, texts: Sequence[str]) -> Tensor:
        """Embeddings ``(len(texts), d_embed)`` of ``texts`` (not normalised), as ``clip.encode_texts``."""
        model_id = clip.spec.id
        with self._lock:
            found = {text: self._rows[(model_id, text)] for text in texts if (model_id, text) in self._rows}
            for text in found:
                self._rows.move_to_end((model_id, text))
        missing = [text for text in dict.fromkeys(texts) if text not in found]
        if missing:
            with torch.no_grad():
                fresh = clip.encode_texts(missing)
            found.update(zip(missing, fresh, strict=True))
            self._keep(model_id, missing, fresh)
        _count("hit", len(texts) - len(missing))
        _count("miss", len(missing))
        return torch.stack([found[text] for text in texts])

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: tuple[str, str]) -> bool:
        """Whether ``(model id, text)`` is held."""
        return key in self._rows

    def _keep(self, model_id: str, texts: list[str], rows: Tensor) -> None:
        if self.capacity == 0:
            return
        with self._lock:
            for text, row in zip(texts, rows, strict=True):
                self._rows[(model_id, text)] = row
                self._rows.move_to_end((model_id, text))
            while len(self._rows) > self.capacity:
                self._rows.popitem(last=False)


def _count(result: str, n: int) -> None:
    if n > 0:
        metrics().cache_lookups.inc(n, tags={"cache": CACHE_NAME, "result": result})
