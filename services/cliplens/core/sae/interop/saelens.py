"""SAELens (sae-lens 6.x) on-disk SAEs: a directory with ``cfg.json`` and ``sae_weights.safetensors``.

SAELens's inference math (``sae_lens/saes/*.py``), for an input ``x``::

    x_in = norm_in(x) - b_dec * apply_b_dec_to_input
    pre  = x_in @ W_enc + b_enc                        # topk with rescale_acts_by_decoder_norm: * |W_dec|
    z    = standard: relu(pre)
           topk:     relu of the top k of pre, zero elsewhere
           jumprelu: relu(pre) * (pre > threshold)      # per-latent threshold
    x_hat = norm_out(z @ W_dec + b_dec)                 # topk with rescale: z / |W_dec| first

``norm_in``/``norm_out`` are the identity for ``normalize_activations`` "none", and also for
"expected_average_only_in" in SAELens's ``encode``/``decode``: its trainer folds the scaling factor
``s`` into the weights when training ends (the config then says "none"), but a mid-training
checkpoint keeps the setting and writes ``activation_scaler.json`` beside it, and the trainer computes
``encode(x * s)`` and ``decode(z) / s``. cliplens imports such a directory with ``input_scale = s``
(the math the SAE was trained with), and one without the file as the identity (as SAELens loads it). "constant_norm_rescale" and "layer_norm" normalise each
input by its own norm or statistics, which no fixed affine map holds, so they are not supported.
BatchTopK SAEs are saved by SAELens as "jumprelu" with a constant threshold.

Into cliplens's ``pre = (x * input_scale - b_pre) @ W_enc + b_enc`` and
``x_hat = (z @ W_dec + b_pre) / input_scale`` this folds exactly with ``input_scale = 1``,
``b_pre = b_dec``, and ``b_enc + b_dec @ W_enc`` as the encoder bias when ``apply_b_dec_to_input`` is
false; a JumpReLU threshold ``t`` becomes ``theta = max(t, 0)`` (the ReLU zeroes what a negative
threshold lets through).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.core.sae.config import JumpReluConfig, ReluConfig, SaeConfig, TopKConfig
from cliplens.core.sae.interop.base import (
    ImportOptions,
    PeerSae,
    check_options,
    expect_shape,
    load_state,
)
from cliplens.core.sae.modules import BatchTopKSae, JumpReluSae, ReluSae, Sae, TopKSae
from cliplens.core.sae.registry import build_sae
from cliplens.core.sites import Site

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
SCALER_FILE = "activation_scaler.json"
SAELENS_VERSION = "6.0.0"  # the config layout written by export
COMMON_TENSORS = ("W_enc", "b_enc", "W_dec", "b_dec")
AFFINE_NORMS = ("none", "expected_average_only_in")
UNSUPPORTED_NORMS = ("constant_norm_rescale", "layer_norm")


@dataclass(frozen=True)
class SaeLensConfig:
    """The fields of a SAELens ``cfg.json`` that the conversion needs (pre-6.0 layouts are read too)."""

    architecture: str
    d_in: int
    d_sae: int
    dtype: str
    apply_b_dec_to_input: bool
    normalize_activations: str
    reshape_activations: str
    k: int | None
    rescale_acts_by_decoder_norm: bool
    hook_name: str | None
    cliplens_site: str | None

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str) -> SaeLensConfig:
        metadata: dict[str, Any] = raw["metadata"] if isinstance(raw.get("metadata"), dict) else {}
        architecture = raw.get("architecture", "standard")
        k = raw.get("k")
        kwargs = raw.get("activation_fn_kwargs") or {}
        if "architecture" not in raw and raw.get("activation_fn") == "topk" and kwargs.get("k") is not None:
            architecture, k = (
                "topk",
                kwargs["k"],
            )  # pre-6.0 layout, as SAELens's handle_pre_6_0_config reads it
        norm = raw.get("normalize_activations", "none")
        if isinstance(norm, bool) or norm is None:  # pre-6.0 layout
            norm = "expected_average_only_in" if norm else "none"
        try:
            return cls(
                architecture=str(architecture),
                d_in=int(raw["d_in"]),
                d_sae=int(raw["d_sae"]),
                dtype=str(raw.get("dtype", "float32")),
                apply_b_dec_to_input=bool(raw.get("apply_b_dec_to_input", True)),
                normalize_activations=str(norm),
                reshape_activations=str(raw.get("reshape_activations") or "none"),
                k=None if k is None else int(k),
                rescale_acts_by_decoder_norm=bool(raw.get("rescale_acts_by_decoder_norm", False)),
                hook_name=metadata.get("hook_name") or raw.get("hook_name") or raw.get("hook_point"),
                cliplens_site=metadata.get("cliplens_site"),
            )
        except KeyError as exc:
            raise InvalidInputError(f"{where}: SAELens config has no {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"{where}: malformed SAELens config: {exc}") from None


class _Kind:
    """One SAELens architecture: its extra tensors and the cliplens config and state it becomes."""

    name: ClassVar[str]
    extra_tensors: ClassVar[tuple[str, ...]] = ()

    def config(self, cfg: SaeLensConfig, **shared: Any) -> SaeConfig:
        raise NotImplementedError

    def state(self, cfg: SaeLensConfig, tensors: dict[str, Tensor], where: str) -> dict[str, Tensor]:
        """The architecture's own cliplens state (beyond the shared weights)."""
        return {}


class _Standard(_Kind):
    name = "standard"

    def config(self, cfg: SaeLensConfig, **shared: Any) -> SaeConfig:
        return ReluConfig(**shared)


class _TopK(_Kind):
    name = "topk"

    def config(self, cfg: SaeLensConfig, **shared: Any) -> SaeConfig:
        if cfg.k is None:
            raise InvalidInputError("SAELens topk config has no 'k'")
        return TopKConfig(k=cfg.k, **shared)


class _JumpRelu(_Kind):
    name = "jumprelu"
    extra_tensors = ("threshold",)

    def config(self, cfg: SaeLensConfig, **shared: Any) -> SaeConfig:
        return JumpReluConfig(**shared)

    def state(self, cfg: SaeLensConfig, tensors: dict[str, Tensor], where: str) -> dict[str, Tensor]:
        threshold = expect_shape(tensors, "threshold", (cfg.d_sae,), where)
        return {"log_threshold": threshold.clamp_min(0.0).log()}


KINDS: dict[str, _Kind] = {kind.name: kind for kind in (_Standard(), _TopK(), _JumpRelu())}


def site_for(cfg: SaeLensConfig, site: str | None) -> str:
    """The cliplens site: ``site`` when given, else one recorded by cliplens's own export."""
    if site is not None:
        return str(Site.parse(site))
    if cfg.cliplens_site:
        return str(Site.parse(cfg.cliplens_site))
    raise InvalidInputError(
        f"cannot tell the cliplens site from SAELens hook name {cfg.hook_name!r}: a name such as "
        "'blocks.L.hook_resid_post' does not say whether the SAE read the CLS token ('resid:L') or every "
        "token ('resid:L:patches'); pass --site ('final', 'resid:L' or 'resid:L:patches')"
    )


class SaeLensFormat:
    """SAELens's directory layout: ``cfg.json`` + ``sae_weights.safetensors``."""

    name = "saelens"
    reads_options: tuple[str, ...] = ()
    writes = True

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
        where = f"SAELens SAE {directory}"
        for file in (CFG_FILE, WEIGHTS_FILE):
            if not (directory / file).is_file():
                raise NotFoundError(
                    f"{where}: missing {file} (a SAELens SAE directory has {CFG_FILE} and {WEIGHTS_FILE})"
                )
        try:
            raw = json.loads((directory / CFG_FILE).read_text())
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{where}: {CFG_FILE} is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise InvalidInputError(f"{where}: {CFG_FILE} must hold a JSON object")
        cfg = SaeLensConfig.from_dict(raw, where)
        kind = self._kind(cfg, where)
        notes = self._check_config(cfg, where)
        tensors = load_file(str(directory / WEIGHTS_FILE))
        self._check_tensors(tensors, kind, where)
        d_in, d_sae = cfg.d_in, cfg.d_sae
        W_enc = expect_shape(tensors, "W_enc", (d_in, d_sae), where)
        b_enc = expect_shape(tensors, "b_enc", (d_sae,), where)
        W_dec = expect_shape(tensors, "W_dec", (d_sae, d_in), where)
        b_dec = expect_shape(tensors, "b_dec", (d_in,), where)
        if cfg.rescale_acts_by_decoder_norm:
            # SAELens ranks pre * |W_dec| and divides z by |W_dec| before decoding: fold both in.
            norms = W_dec.norm(dim=-1)
            safe = torch.where(norms > 0, norms, torch.ones_like(norms))
            W_enc, b_enc, W_dec = W_enc * norms, b_enc * norms, W_dec / safe[:, None]
            notes.append(
                "rescale_acts_by_decoder_norm folded in: W_enc, b_enc scaled and W_dec divided by |W_dec|"
            )
        if not cfg.apply_b_dec_to_input:
            b_enc = b_enc + b_dec @ W_enc
        shared = {"d_in": d_in, "d_sae": d_sae, "model_id": model_id, "site": site_for(cfg, site)}
        sae = build_sae(kind.config(cfg, **shared), seed=0)
        state = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_pre": b_dec}
        scale = torch.tensor(self._scaling_factor(directory, cfg, notes, where))
        load_state(sae, state | kind.state(cfg, tensors, where) | {"input_scale": scale})
        source = {"format": self.name, "path": str(directory), "architecture": cfg.architecture}
        if cfg.hook_name:
            source["hook_name"] = str(cfg.hook_name)
        return PeerSae(sae, source, notes)

    @staticmethod
    def _kind(cfg: SaeLensConfig, where: str) -> _Kind:
        if cfg.architecture not in KINDS:
            raise InvalidInputError(
                f"{where}: SAELens architecture '{cfg.architecture}' is not supported; supported: "
                f"{', '.join(KINDS)}"
            )
        return KINDS[cfg.architecture]

    @staticmethod
    def _check_config(cfg: SaeLensConfig, where: str) -> list[str]:
        notes: list[str] = []
        if cfg.normalize_activations not in AFFINE_NORMS:
            raise InvalidInputError(
                f"{where}: normalize_activations '{cfg.normalize_activations}' normalises each input by "
                f"its own statistics, which a cliplens SAE cannot hold; supported: {', '.join(AFFINE_NORMS)}"
            )
        if cfg.reshape_activations != "none":
            raise InvalidInputError(
                f"{where}: reshape_activations '{cfg.reshape_activations}' (attention-head inputs) is not "
                "supported; cliplens sites are residual-stream vectors"
            )
        if cfg.rescale_acts_by_decoder_norm and cfg.architecture != "topk":
            raise InvalidInputError(f"{where}: rescale_acts_by_decoder_norm is only read for topk SAEs")
        if cfg.dtype not in ("float32", "torch.float32"):
            notes.append(f"SAELens would compute in {cfg.dtype}; cliplens computes in float32")
        return notes

    @staticmethod
    def _scaling_factor(directory: Path, cfg: SaeLensConfig, notes: list[str], where: str) -> float:
        """The input scale: ``activation_scaler.json``'s factor for an unfolded "expected_average_only_in"."""
        if cfg.normalize_activations != "expected_average_only_in":
            return 1.0
        scaler = directory / SCALER_FILE
        factor = None
        if scaler.is_file():
            try:
                factor = json.loads(scaler.read_text()).get("scaling_factor")
            except (json.JSONDecodeError, AttributeError) as exc:
                raise InvalidInputError(f"{where}: {SCALER_FILE} is not a JSON object: {exc}") from None
        if factor is None:
            notes.append(
                "normalize_activations 'expected_average_only_in' without a scaling factor in "
                f"{SCALER_FILE}: imported without input scaling, as SAELens's encode/decode do"
            )
            return 1.0
        if not isinstance(factor, int | float) or not factor > 0:
            raise InvalidInputError(
                f"{where}: {SCALER_FILE} scaling_factor must be a positive number, got {factor!r}"
            )
        notes.append(
            f"normalize_activations 'expected_average_only_in' with scaling factor {factor:g} from "
            f"{SCALER_FILE}: input_scale = {factor:g}, as SAELens's trainer computes (its bare "
            "encode/decode would ignore the factor)"
        )
        return float(factor)

    @staticmethod
    def _check_tensors(tensors: dict[str, Tensor], kind: _Kind, where: str) -> None:
        expected = set(COMMON_TENSORS) | set(kind.extra_tensors)
        scaling = tensors.pop("scaling_factor", None)
        if scaling is not None and not torch.allclose(scaling, torch.ones_like(scaling)):
            raise InvalidInputError(
                f"{where}: a 'scaling_factor' other than 1 (pre-6.0 fine-tuning) is not supported"
            )
        unexpected = sorted(set(tensors) - expected)
        if unexpected:
            raise InvalidInputError(
                f"{where}: unexpected tensors {', '.join(unexpected)} for SAELens architecture '{kind.name}' "
                f"(expected {', '.join(sorted(expected))})"
            )

    def write(self, sae: Sae, path: str | Path) -> Path:
        """Write ``sae`` as a SAELens SAE with ``apply_b_dec_to_input`` and no normalisation:
        ``W_enc * s``, ``W_dec / s`` and ``b_dec = b_pre / s`` for the input scale ``s``."""
        directory = Path(path)
        cfg = sae.cfg
        scale = sae.input_scale.detach().to(torch.float64).cpu()
        W_enc = sae.W_enc.detach().to(torch.float64).cpu() * scale
        W_dec = sae.W_dec.detach().to(torch.float64).cpu() / scale
        b_dec = sae.b_pre.detach().to(torch.float64).cpu() / scale
        b_enc = sae.b_enc.detach().to(torch.float64).cpu()
        tensors = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}
        document: dict[str, Any] = {}
        if isinstance(sae, BatchTopKSae):  # inference: pre * (pre > threshold), one threshold for all
            threshold = float(sae.threshold)
            if threshold < 0:
                raise InvalidInputError(
                    f"cannot export a {cfg.arch} SAE with a negative threshold ({threshold:g}) to SAELens: "
                    "its JumpReLU applies a ReLU, so negative activations would be lost"
                )
            architecture = "jumprelu"
            tensors["threshold"] = torch.full((cfg.d_sae,), threshold, dtype=torch.float64)
        elif isinstance(sae, TopKSae):
            architecture = "topk"
            document |= {"k": int(sae.cfg.k), "rescale_acts_by_decoder_norm": False}
        elif isinstance(sae, JumpReluSae):
            architecture = "jumprelu"
            tensors["threshold"] = sae.log_threshold.detach().to(torch.float64).cpu().exp()
        elif isinstance(sae, ReluSae):
            architecture = "standard"
        else:
            raise InvalidInputError(f"cannot export SAE architecture '{cfg.arch}' to SAELens")
        document = {
            "architecture": architecture,
            "d_in": cfg.d_in,
            "d_sae": cfg.d_sae,
            "dtype": "float32",
            "device": "cpu",
            "apply_b_dec_to_input": True,
            "normalize_activations": "none",
            "reshape_activations": "none",
            **document,
            "metadata": {
                "sae_lens_version": SAELENS_VERSION,
                "sae_lens_training_version": SAELENS_VERSION,
                "model_name": cfg.model_id,
                "hook_name": None,
                "cliplens_site": cfg.site,
                "cliplens_arch": cfg.arch,
                "cliplens_dataset_id": cfg.dataset_id,
            },
        }
        directory.mkdir(parents=True, exist_ok=True)
        save_file(
            {name: value.to(torch.float32).contiguous() for name, value in tensors.items()},
            str(directory / WEIGHTS_FILE),
        )
        (directory / CFG_FILE).write_text(json.dumps(document, indent=2))
        return directory
