"""Labels of SAE latents: the vocabulary labels their decoder directions align with best.

Alignment is ``cos(d_k, T(label)) - cos(d_k, T(""))`` with ``d_k`` the latent's decoder direction
mapped into the image-embedding space (an input-independent stand-in for the mean embedding of the
latent's top images, which needs the data set's images).
"""

from __future__ import annotations

import torch
from torch import Tensor

from cliplens.core.attribution import logit_lens
from cliplens.core.models import LoadedClip
from cliplens.core.naming import Vocabulary, decoder_alignment, embed_vocabulary, load_vocabulary
from cliplens.core.sae import Sae
from cliplens.serve.actor_types import Label

MAX_LABELS = 10


class LatentLabeller:
    """Top labels per latent, computed once per SAE (``(d_sae, MAX_LABELS)``) and kept."""

    def __init__(self, vocabulary_name: str = "default") -> None:
        self.vocabulary_name = vocabulary_name
        self._vocabularies: dict[str, Vocabulary] = {}
        self._top: dict[str, tuple[Tensor, Tensor]] = {}

    def labels(
        self, sae_id: str, clip: LoadedClip, sae: Sae, latents: list[int], n: int
    ) -> list[list[Label]]:
        """The best ``n`` labels of each latent, best first."""
        if n <= 0:
            return [[] for _ in latents]
        vocabulary = self._vocabulary(clip)
        if sae_id not in self._top:
            with torch.no_grad():
                relative = (
                    decoder_alignment(clip, sae, vocabulary)
                    - logit_lens(clip, sae, vocabulary.empty[None]).T.cpu()
                )
            values, indices = relative.topk(min(MAX_LABELS, relative.shape[1]), dim=-1)
            self._top[sae_id] = (values, indices)
        values, indices = self._top[sae_id]
        return [
            [
                (vocabulary.labels[int(i)], float(v))
                for v, i in zip(values[k, :n], indices[k, :n], strict=True)
            ]
            for k in latents
        ]

    def _vocabulary(self, clip: LoadedClip) -> Vocabulary:
        if clip.spec.id not in self._vocabularies:
            self._vocabularies[clip.spec.id] = embed_vocabulary(clip, load_vocabulary(self.vocabulary_name))
        return self._vocabularies[clip.spec.id]
