"""sparsify (EleutherAI's ``eai-sparsify`` 1.3.x) on-disk SAEs: a directory with ``cfg.json`` and
``sae.safetensors``, as ``SparseCoder.save_to_disk`` writes it (the trainer writes one per hookpoint,
``<run>/<hookpoint>/``).

sparsify's inference math (``sparsify/sparse_coder.py``), for an input ``x``::

    pre   = relu((x - b_dec) @ encoder.weight.T + encoder.bias)    # encoder is an nn.Linear
    z     = topk:     the top k of pre (relu BEFORE selection), zero elsewhere
            groupmax: the max of each of k contiguous groups
    x_hat = z @ W_dec + b_dec  (+ x @ W_skip.T with skip_connection)

A topk SAE folds exactly into cliplens's topk SAE with ``W_enc = encoder.weight.T``,
``b_enc = encoder.bias`` and ``b_pre = b_dec``: cliplens takes the top k of ``pre`` and then the ReLU,
which gives the same dense latents (when fewer than k pre-activations are positive, sparsify also
keeps some zeros, which are zeros either way). ``groupmax``, ``skip_connection`` (a ``W_skip`` term
outside the latents) and ``transcode`` (a transcoder, which maps a module's input to its output
and does not subtract ``b_dec``) have no cliplens equivalent and are refused by name. ``multi_topk``
only changes the training loss. sparsify has no input normalisation; ``normalize_decoder`` is a
training constraint, so decoder rows are kept as stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.core.sae.config import TopKConfig
from cliplens.core.sae.interop.base import (
    ImportOptions,
    PeerSae,
    check_options,
    expect_shape,
    load_state,
    require_site,
)
from cliplens.core.sae.modules import Sae
from cliplens.core.sae.registry import build_sae

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae.safetensors"
TENSORS = ("encoder.weight", "encoder.bias", "W_dec", "b_dec")


@dataclass(frozen=True)
class SparsifyConfig:
    """The fields of a sparsify ``cfg.json`` that the conversion needs."""

    activation: str
    d_in: int
    d_sae: int
    k: int
    skip_connection: bool
    transcode: bool
    multi_topk: bool

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str) -> SparsifyConfig:
        try:
            d_in = int(raw["d_in"])
            num_latents = int(raw.get("num_latents") or 0)
            d_sae = num_latents or d_in * int(raw["expansion_factor"])
            return cls(
                activation=str(raw.get("activation", "topk")),
                d_in=d_in,
                d_sae=d_sae,
                k=int(raw["k"]),
                skip_connection=bool(raw.get("skip_connection", False)),
                transcode=bool(raw.get("transcode", False)),
                multi_topk=bool(raw.get("multi_topk", False)),
            )
        except KeyError as exc:
            raise InvalidInputError(f"{where}: sparsify config has no {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"{where}: malformed sparsify config: {exc}") from None


class SparsifyFormat:
    """sparsify's per-hookpoint directory: ``cfg.json`` + ``sae.safetensors`` (topk SAEs only)."""

    name = "sparsify"
    reads_options: tuple[str, ...] = ()
    writes = False

    def read(
        self,
        path: str | Path,
        *,
        model_id: str,
        site: str | None = None,
        options: ImportOptions | None = None,
    ) -> PeerSae:
        check_options(self, options)
        directory = Path(path)
        where = f"sparsify SAE {directory}"
        self._check_files(directory, where)
        try:
            raw = json.loads((directory / CFG_FILE).read_text())
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{where}: {CFG_FILE} is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise InvalidInputError(f"{where}: {CFG_FILE} must hold a JSON object")
        cfg = SparsifyConfig.from_dict(raw, where)
        self._check_config(cfg, where)
        tensors = load_file(str(directory / WEIGHTS_FILE))
        unexpected = sorted(set(tensors) - set(TENSORS))
        if unexpected:
            raise InvalidInputError(
                f"{where}: unexpected tensors {', '.join(unexpected)} for a sparsify topk SAE "
                f"(expected {', '.join(TENSORS)})"
            )
        d_in, d_sae = cfg.d_in, cfg.d_sae
        notes: list[str] = []
        dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in tensors.values()} - {"float32"})
        if dtypes:
            notes.append(f"sparsify weights stored in {', '.join(dtypes)}; cliplens computes in float32")
        if cfg.multi_topk:
            notes.append("multi_topk only changes sparsify's training loss; inference is plain top-k")
        hookpoint = directory.resolve().name
        cliplens_site = require_site(
            site,
            where,
            f"sparsify names only the hookpoint ('{hookpoint}', the directory's name), which does not say "
            "whether the SAE read the CLS token or every token",
        )
        sae: Sae = build_sae(
            TopKConfig(k=cfg.k, d_in=d_in, d_sae=d_sae, model_id=model_id, site=cliplens_site), seed=0
        )
        state = {
            "W_enc": expect_shape(tensors, "encoder.weight", (d_sae, d_in), where).T,
            "b_enc": expect_shape(tensors, "encoder.bias", (d_sae,), where),
            "W_dec": expect_shape(tensors, "W_dec", (d_sae, d_in), where),
            "b_pre": expect_shape(tensors, "b_dec", (d_in,), where),
        }
        load_state(sae, state)
        source = {"format": self.name, "path": str(directory), "architecture": cfg.activation}
        source["hookpoint"] = hookpoint
        return PeerSae(sae, source, notes)

    @staticmethod
    def _check_files(directory: Path, where: str) -> None:
        if all((directory / file).is_file() for file in (CFG_FILE, WEIGHTS_FILE)):
            return
        hookpoints = (
            sorted(p.name for p in directory.iterdir() if (p / CFG_FILE).is_file())
            if directory.is_dir()
            else []
        )
        if hookpoints:
            raise InvalidInputError(
                f"{where}: a sparsify training run with one SAE per hookpoint; import one of its "
                f"directories: {', '.join(hookpoints)}"
            )
        raise NotFoundError(
            f"{where}: missing {CFG_FILE} or {WEIGHTS_FILE} (a sparsify SAE directory has both)"
        )

    @staticmethod
    def _check_config(cfg: SparsifyConfig, where: str) -> None:
        if cfg.transcode:
            raise InvalidInputError(
                f"{where}: sparsify transcoders (transcode=true) are not supported: a transcoder maps a "
                "module's input to its output, and cliplens SAEs reconstruct their own input"
            )
        if cfg.activation != "topk":
            raise InvalidInputError(
                f"{where}: sparsify activation '{cfg.activation}' is not supported (cliplens has no "
                f"{cfg.activation} SAE); supported: topk"
            )
        if cfg.skip_connection:
            raise InvalidInputError(
                f"{where}: sparsify skip_connection (a W_skip term added to the reconstruction) is not "
                "supported: cliplens SAEs have no skip connection"
            )

    def write(self, sae: Sae, path: str | Path) -> Path:
        raise InvalidInputError("export to the sparsify format is not supported; export to saelens instead")
