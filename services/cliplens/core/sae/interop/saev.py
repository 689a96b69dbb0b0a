"""saev (0.1.x) SAEs: one ``sae.pt`` file, as ``saev.nn.dump`` writes it: a line of JSON (the SAE
config: ``d_vit``, ``exp_factor``, ...) and then ``torch.save(state_dict)``. It is read as
``saev.nn.load`` reads it, with ``torch.load(..., weights_only=True)`` on the rest of the file.

saev's math (``saev/nn.py``; ReLU only)::

    f     = relu((x - b_dec) @ W_enc + b_enc)
    x_hat = f @ W_dec + b_dec

which is cliplens's ReLU SAE with ``b_pre = b_dec``. saev's data loader, not the SAE, normalises the
activations first: the SAE sees ``(act - mean) / scalar``, and neither value is in ``sae.pt``. Without
them the imported SAE reads normalised inputs, as saev's own SAE does. Given (``ImportOptions``
``input_mean``, a file with the ``(d_vit,)`` mean, and ``input_scalar``), they fold in exactly:
``input_scale = 1 / scalar`` and ``b_pre = b_dec + mean / scalar``, so that ``encode`` reads raw
activations and ``decode`` gives ``x_hat * scalar + mean``, in raw units.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import Tensor

from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.core.sae.config import ReluConfig
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

CHECKPOINT_FILE = "sae.pt"
TENSORS = ("W_enc", "b_enc", "W_dec", "b_dec")


def read_checkpoint(file: Path, where: str) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The JSON header and the state dict of a ``saev.nn.dump`` file."""
    with file.open("rb") as handle:
        header, rest = handle.readline(), handle.read()
    try:
        config = json.loads(header)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(
            f"{where}: the first line is not JSON ({exc}); a saev sae.pt starts with its config as a line "
            "of JSON"
        ) from None
    if not isinstance(config, dict):
        raise InvalidInputError(f"{where}: the config line must hold a JSON object")
    try:
        state = torch.load(io.BytesIO(rest), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a file it cannot unpickle safely
        raise InvalidInputError(f"{where}: cannot read the state dict after the config line: {exc}") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise InvalidInputError(f"{where}: the state dict after the config line must hold tensors")
    return config, {str(name): value for name, value in state.items()}


def read_vector(file: str, d_in: int, where: str) -> Tensor:
    """A ``(d_in,)`` vector from ``.npy``, ``.pt`` (a tensor, ``weights_only``) or ``.safetensors``
    (its only tensor), as float64."""
    path = Path(file)
    if not path.is_file():
        raise NotFoundError(f"{where}: no input mean file {path}")
    try:
        if path.suffix == ".npy":
            value: Any = torch.from_numpy(np.load(path, allow_pickle=False))
        elif path.suffix == ".safetensors":
            tensors = load_file(str(path))
            if len(tensors) != 1:
                raise InvalidInputError(f"{where}: {path} must hold one tensor, has {', '.join(tensors)}")
            (value,) = tensors.values()
        else:
            value = torch.load(path, map_location="cpu", weights_only=True)
    except InvalidInputError:
        raise
    except Exception as exc:
        raise InvalidInputError(f"{where}: cannot read the input mean from {path}: {exc}") from None
    if not isinstance(value, Tensor) or value.numel() != d_in:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise InvalidInputError(f"{where}: the input mean in {path} must be a ({d_in},) vector, got {shape}")
    return value.reshape(d_in).to(torch.float64)


class SaevFormat:
    """saev's ``sae.pt`` (JSON config line + torch state dict); ReLU SAEs."""

    name = "saev"
    reads_options: tuple[str, ...] = ("input_mean", "input_scalar")
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
        file = checkpoint_file(path, CHECKPOINT_FILE, f"saev SAE {path}")
        where = f"saev SAE {file}"
        config, tensors = read_checkpoint(file, where)
        activation = config.get("activation")
        if activation is not None and "relu" not in json.dumps(activation).lower():
            raise InvalidInputError(
                f"{where}: saev activation {json.dumps(activation)} is not supported; supported: relu"
            )
        unexpected = sorted(set(tensors) - set(TENSORS))
        if unexpected:
            raise InvalidInputError(
                f"{where}: unexpected tensors {', '.join(unexpected)} for a saev ReLU SAE "
                f"(expected {', '.join(TENSORS)})"
            )
        if "W_enc" not in tensors or tensors["W_enc"].dim() != 2:
            raise InvalidInputError(f"{where}: 'W_enc' must be a (d_vit, d_sae) matrix")
        d_in, d_sae = tensors["W_enc"].shape
        if "d_vit" in config and config["d_vit"] != d_in:
            raise InvalidInputError(f"{where}: config d_vit {config['d_vit']} but W_enc has {d_in} rows")
        W_enc = expect_shape(tensors, "W_enc", (d_in, d_sae), where)
        b_enc = expect_shape(tensors, "b_enc", (d_sae,), where)
        W_dec = expect_shape(tensors, "W_dec", (d_sae, d_in), where)
        b_dec = expect_shape(tensors, "b_dec", (d_in,), where)
        notes: list[str] = []
        scale, b_pre = self._normalisation(options, b_dec, d_in, notes, where)
        cliplens_site = require_site(site, where, "a saev sae.pt records no site")
        cfg = ReluConfig(d_in=d_in, d_sae=d_sae, model_id=model_id, site=cliplens_site)
        sae: Sae = build_sae(cfg, seed=0)
        state = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_pre": b_pre, "input_scale": scale}
        load_state(sae, state)
        return PeerSae(sae, {"format": self.name, "path": str(file), "architecture": "relu"}, notes)

    @staticmethod
    def _normalisation(
        options: ImportOptions, b_dec: Tensor, d_in: int, notes: list[str], where: str
    ) -> tuple[Tensor, Tensor]:
        """``input_scale`` and ``b_pre`` for saev's loader normalisation ``(x - mean) / scalar``."""
        if options.input_mean is None and options.input_scalar is None:
            notes.append(
                "saev normalises activations in its data loader ((act - mean) / scalar), which sae.pt does "
                "not record: the imported SAE reads normalised inputs, as saev's SAE does; pass "
                "--input-mean FILE and --input-scalar X to fold them in"
            )
            return torch.tensor(1.0, dtype=torch.float64), b_dec
        scalar = 1.0 if options.input_scalar is None else float(options.input_scalar)
        if not scalar > 0:
            raise InvalidInputError(f"{where}: --input-scalar must be positive, got {scalar:g}")
        mean = torch.zeros(d_in, dtype=torch.float64)
        if options.input_mean is not None:
            mean = read_vector(options.input_mean, d_in, where)
        notes.append(
            f"saev input normalisation folded in: (x - mean) / {scalar:g} with the mean "
            f"{'from ' + options.input_mean if options.input_mean else 'zero'}; the SAE reads raw activations"
        )
        return torch.tensor(1.0 / scalar, dtype=torch.float64), b_dec + mean / scalar

    def write(self, sae: Sae, path: str | Path) -> Path:
        raise InvalidInputError("export to the saev format is not supported; export to saelens instead")
