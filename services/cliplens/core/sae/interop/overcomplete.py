"""overcomplete (0.3.x) SAEs: a ``torch.save(model.state_dict())`` file, by convention ``model.pt``
(overcomplete has no save function of its own).

The state dict holds **no configuration**: not the class, not ``top_k``, not the BatchTopK threshold
(``running_threshold`` is a plain attribute, lost by ``state_dict()``), and not the dictionary
normalisation. The caller gives them (``ImportOptions``: ``arch``, ``k``, ``threshold``); only a
``thresholds`` tensor tells that the SAE is a ``JumpSAE``. The default ``"linear"`` encoder is the only
one read (keys ``encoder.final_block.0.weight``/``.bias``); the others (``mlp_*``, ``resnet_*``,
``attention_*``) are refused. The dictionary is assumed to use the default ``l2`` normalisation.

overcomplete's inference math (``overcomplete/sae/*.py``), for an input ``x``::

    pre   = x @ E.T + b                         # no decoder bias, nothing subtracted from x
    codes = relu(pre)
            SAE:          codes
            TopKSAE:      the top k of codes per row (relu BEFORE selection)
            BatchTopKSAE: codes * (codes >= running_threshold)     # eval mode, one scalar
            JumpSAE:      codes * (codes >= exp(thresholds))       # per latent, stored as logs
    x_hat = codes @ D,  D = _weights / (|_weights row|_2 + 1e-8) * exp(multiplier)

Into cliplens this folds with ``W_enc = E.T``, ``b_enc = b``, ``b_pre = 0``, ``input_scale = 1`` and
``W_dec = D`` (computed once, at import). TopK: cliplens's top-k-then-ReLU gives the same dense latents.
BatchTopK: cliplens keeps ``pre * (pre > max(running_threshold, 0))``; JumpSAE: ``log_threshold =
thresholds``. overcomplete keeps a code *equal* to its threshold (``>=``) and cliplens does not
(``>``): the two differ only on that measure-zero set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cliplens.core.errors import InvalidInputError
from cliplens.core.sae.config import BatchTopKConfig, JumpReluConfig, ReluConfig, SaeConfig, TopKConfig
from cliplens.core.sae.interop.base import (
    ImportOptions,
    PeerSae,
    check_options,
    checkpoint_file,
    expect_shape,
    load_state,
    require_site,
)
from cliplens.core.sae.modules import Sae
from cliplens.core.sae.registry import build_sae

CHECKPOINT_FILE = "model.pt"
ENCODER_WEIGHT = "encoder.final_block.0.weight"
ENCODER_BIAS = "encoder.final_block.0.bias"
DICTIONARY = "dictionary._weights"
MULTIPLIER = "dictionary.multiplier"
THRESHOLDS = "thresholds"
ARCHITECTURES = ("relu", "topk", "batchtopk", "jumprelu")
L2_EPS = 1e-8  # overcomplete's l2 dictionary normalisation: W / (|W|_2 + 1e-8)
CLASSES = {"relu": "SAE", "topk": "TopKSAE", "batchtopk": "BatchTopKSAE", "jumprelu": "JumpSAE"}


def load_state_dict(file: Path, where: str) -> dict[str, Tensor]:
    """The tensors of a ``torch.save``d state dict, read with ``weights_only=True``."""
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a file it cannot unpickle safely
        raise InvalidInputError(f"{where}: cannot read {file.name} as a torch state dict: {exc}") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise InvalidInputError(f"{where}: {file.name} must hold a state dict of tensors")
    return {str(name): value for name, value in state.items()}


class OvercompleteFormat:
    """overcomplete's ``model.pt`` state dict (default linear encoder); ``--arch`` says the class."""

    name = "overcomplete"
    reads_options: tuple[str, ...] = ("arch", "k", "threshold")
    writes = False

    def read(
        self,
        path: str | Path,
        *,
        model_id: str,
        site: str | None = None,
        options: ImportOptions | None = None,
    ) -> PeerSae:
        options = check_options(self, options)
        file = checkpoint_file(path, CHECKPOINT_FILE, f"overcomplete SAE {path}")
        where = f"overcomplete SAE {file}"
        tensors = load_state_dict(file, where)
        arch = self._architecture(tensors, options, where)
        expected = {ENCODER_WEIGHT, ENCODER_BIAS, DICTIONARY, MULTIPLIER} | (
            {THRESHOLDS} if arch == "jumprelu" else set()
        )
        if set(tensors) != expected:
            raise InvalidInputError(
                f"{where}: state dict keys {', '.join(sorted(tensors))} are not those of an overcomplete "
                f"{CLASSES[arch]} with the default 'linear' encoder ({', '.join(sorted(expected))}); "
                "other encoders (mlp, resnet, attention) are not supported"
            )
        if tensors[DICTIONARY].dim() != 2:
            raise InvalidInputError(f"{where}: '{DICTIONARY}' must be a (d_sae, d_in) matrix")
        d_sae, d_in = tensors[DICTIONARY].shape
        W_enc = expect_shape(tensors, ENCODER_WEIGHT, (d_sae, d_in), where).T
        b_enc = expect_shape(tensors, ENCODER_BIAS, (d_sae,), where)
        weights = expect_shape(tensors, DICTIONARY, (d_sae, d_in), where)
        multiplier = expect_shape(tensors, MULTIPLIER, (), where)
        W_dec = weights / (weights.norm(dim=-1, keepdim=True) + L2_EPS) * multiplier.exp()
        notes = [
            "overcomplete checkpoints do not record the dictionary normalisation: assumed the default "
            "'l2' (decoder = _weights / (|row| + 1e-8) * exp(multiplier), computed once at import)"
        ]
        cliplens_site = require_site(site, where, "an overcomplete state dict records no site")
        shared = {"d_in": d_in, "d_sae": d_sae, "model_id": model_id, "site": cliplens_site}
        state = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_pre": torch.zeros(d_in)}
        cfg, extra = self._config(arch, tensors, options, shared, notes, where)
        sae: Sae = build_sae(cfg, seed=0)
        load_state(sae, state | extra)
        source = {"format": self.name, "path": str(file), "architecture": f"{arch} ({CLASSES[arch]})"}
        return PeerSae(sae, source, notes)

    @staticmethod
    def _architecture(tensors: dict[str, Tensor], options: ImportOptions, where: str) -> str:
        if options.arch is not None and options.arch not in ARCHITECTURES:
            raise InvalidInputError(
                f"{where}: overcomplete architecture '{options.arch}' is not supported; supported: "
                f"{', '.join(ARCHITECTURES)} ({', '.join(CLASSES.values())}); MpSAE, OMPSAE, QSAE, "
                "RATopKSAE and RAJumpSAE have no cliplens equivalent"
            )
        if THRESHOLDS in tensors:
            if options.arch not in (None, "jumprelu"):
                raise InvalidInputError(
                    f"{where}: the state dict has '{THRESHOLDS}', so it is a JumpSAE, not --arch {options.arch}"
                )
            return "jumprelu"
        if options.arch is None:
            raise InvalidInputError(
                f"{where}: overcomplete checkpoints do not record their architecture: pass --arch "
                f"{{{','.join(ARCHITECTURES)}}} (with --k for topk, and --threshold, the model's "
                "running_threshold, for batchtopk)"
            )
        if options.arch == "jumprelu":
            raise InvalidInputError(f"{where}: --arch jumprelu, but the state dict has no '{THRESHOLDS}'")
        return options.arch

    @staticmethod
    def _config(
        arch: str,
        tensors: dict[str, Tensor],
        options: ImportOptions,
        shared: dict[str, Any],
        notes: list[str],
        where: str,
    ) -> tuple[SaeConfig, dict[str, Tensor]]:
        """The cliplens config and the architecture's own state."""
        if options.k is not None and arch not in ("topk", "batchtopk"):
            raise InvalidInputError(f"{where}: --k is only read for --arch topk or batchtopk, not {arch}")
        if options.threshold is not None and arch != "batchtopk":
            raise InvalidInputError(f"{where}: --threshold is only read for --arch batchtopk, not {arch}")
        d_sae = int(shared["d_sae"])
        if arch == "relu":
            return ReluConfig(**shared), {}
        if arch == "jumprelu":
            log_threshold = expect_shape(tensors, THRESHOLDS, (d_sae,), where)
            return JumpReluConfig(**shared), {"log_threshold": log_threshold}
        if arch == "topk":
            if options.k is None:
                raise InvalidInputError(
                    f"{where}: overcomplete checkpoints do not record top_k: pass --k for --arch topk"
                )
            return TopKConfig(k=options.k, **shared), {}
        if options.threshold is None:
            raise InvalidInputError(
                f"{where}: overcomplete BatchTopK checkpoints lose running_threshold (it is not in the "
                "state dict): pass --threshold with the model's running_threshold for --arch batchtopk"
            )
        k = options.k if options.k is not None else min(BatchTopKConfig.k, d_sae)
        if options.k is None:
            notes.append(
                f"BatchTopK k not given: recorded k = {k} per row (read only by further training; "
                "inference uses the threshold; overcomplete's top_k counts the whole batch)"
            )
        threshold = max(float(options.threshold), 0.0)
        if options.threshold < 0:
            notes.append(
                f"running_threshold {options.threshold:g} < 0 stored as 0: overcomplete thresholds codes "
                "after the ReLU, so a negative threshold keeps every positive code"
            )
        cfg = BatchTopKConfig(k=k, **shared)
        return cfg, {"threshold": torch.tensor(threshold)}

    def write(self, sae: Sae, path: str | Path) -> Path:
        raise InvalidInputError(
            "export to the overcomplete format is not supported; export to saelens instead"
        )
