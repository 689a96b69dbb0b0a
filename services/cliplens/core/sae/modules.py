"""SAE modules: a shared base (encode, decode, losses, decoder-norm constraint) and one subclass per
architecture that supplies its activation function and sparsity penalty."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor, nn

from cliplens.core.errors import InvalidInputError, ShapeMismatchError
from cliplens.core.sae.config import (
    BatchTopKConfig,
    JumpReluConfig,
    MatryoshkaConfig,
    ReluConfig,
    SaeConfig,
    TopKConfig,
)


@dataclass
class SaeLoss:
    """Loss terms of one training batch, in the SAE's scaled input space."""

    total: Tensor
    mse: Tensor
    sparsity: Tensor
    aux: Tensor
    z: Float[Tensor, "batch d_sae"]
    x_hat: Float[Tensor, "batch d_in"]


class Sae(nn.Module):
    """Sparse autoencoder ``x -> z -> x_hat`` with unit-norm decoder rows and a pre-encoder bias.

    Inputs are multiplied by ``input_scale`` (fitted before training so that the mean squared norm
    of the scaled input is ``d_in``); ``decode`` divides it out again, so callers always work in
    the site's own units.

    The random decoder init is drawn on the CPU from ``generator`` when one is given (so a seeded
    generator fixes the init and leaves torch's global RNG untouched), else from the global RNG.
    """

    cfg: SaeConfig
    input_scale: Tensor

    def __init__(self, cfg: SaeConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        W_dec = F.normalize(torch.randn(cfg.d_sae, cfg.d_in, generator=generator), dim=-1)
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_dec.T.clone() * self.encoder_init_scale())
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.b_pre = nn.Parameter(torch.zeros(cfg.d_in))
        self.register_buffer("input_scale", torch.ones(()))

    def encoder_init_scale(self) -> float:
        """Scale of the tied encoder init; dense activations need a smaller one to start near x."""
        return 1.0

    # -- inference -----------------------------------------------------------------------------
    def pre_acts(self, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_sae"]:
        if x.shape[-1] != self.cfg.d_in:
            raise ShapeMismatchError(
                f"SAE expects inputs of width d_in={self.cfg.d_in}, got shape {tuple(x.shape)}"
            )
        x_scaled = x.to(self.W_enc.dtype) * self.input_scale
        return (x_scaled - self.b_pre) @ self.W_enc + self.b_enc

    def activate(self, pre: Float[Tensor, "*batch d_sae"]) -> Float[Tensor, "*batch d_sae"]:
        raise NotImplementedError

    def encode(self, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_sae"]:
        """Latent activations ``z`` of ``x``."""
        return self.activate(self.pre_acts(x))

    def decode(self, z: Float[Tensor, "*batch d_sae"]) -> Float[Tensor, "*batch d_in"]:
        """Reconstruction in the site's units."""
        return (z @ self.W_dec + self.b_pre) / self.input_scale

    def forward(self, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_in"]:
        """Reconstruction ``x_hat`` of ``x``."""
        return self.decode(self.encode(x))

    def decoder_directions(self) -> Float[Tensor, "d_sae d_in"]:
        """Each latent's contribution per unit activation, in the site's units (``W_dec / scale``)."""
        return self.W_dec / self.input_scale

    def check_index(self, latent: int) -> None:
        if not 0 <= latent < self.cfg.d_sae:
            raise InvalidInputError(f"latent index {latent} is out of range [0, {self.cfg.d_sae})")

    # -- training ------------------------------------------------------------------------------
    def sparsity_loss(self, pre: Tensor, z: Tensor) -> Tensor:
        return z.new_zeros(())

    def reconstruction_loss(self, x_scaled: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(loss, x_hat_scaled)``; the MSE is averaged over rows and dimensions."""
        x_hat_scaled = z @ self.W_dec + self.b_pre
        return (x_hat_scaled - x_scaled).pow(2).mean(), x_hat_scaled

    def loss(self, x: Float[Tensor, "batch d_in"], dead: Bool[Tensor, " d_sae"] | None = None) -> SaeLoss:
        pre = self.pre_acts(x)
        z = self.activate(pre)
        x_scaled = x.to(self.W_enc.dtype) * self.input_scale
        mse, x_hat_scaled = self.reconstruction_loss(x_scaled, z)
        sparsity = self.sparsity_loss(pre, z)
        aux = self._aux_loss(pre, x_scaled - x_hat_scaled.detach(), dead)
        total = mse + sparsity + self.cfg.aux_coeff * aux
        return SaeLoss(total, mse, sparsity, aux, z, x_hat_scaled / self.input_scale)

    def _aux_loss(self, pre: Tensor, residual: Tensor, dead: Tensor | None) -> Tensor:
        """AuxK: reconstruct the residual error from the top ``aux_k`` dead latents."""
        if self.cfg.aux_k == 0 or dead is None or not bool(dead.any()):
            return pre.new_zeros(())
        k = min(self.cfg.aux_k, int(dead.sum()))
        masked = pre.masked_fill(~dead, float("-inf"))
        values, indices = masked.topk(k, dim=-1)
        z_aux = torch.zeros_like(pre).scatter(-1, indices, values.relu())
        residual_hat = z_aux @ self.W_dec
        denominator = (residual - residual.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-8)
        return (residual_hat - residual).pow(2).sum(-1).mean() / denominator

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Project decoder rows back to unit norm (call after every optimiser step)."""
        self.W_dec.data = F.normalize(self.W_dec.data, dim=-1)

    @torch.no_grad()
    def remove_parallel_grads(self) -> None:
        """Drop the gradient component along each decoder row (it would only change the norm)."""
        if self.W_dec.grad is not None:
            parallel = (self.W_dec.grad * self.W_dec.data).sum(-1, keepdim=True)
            self.W_dec.grad -= parallel * self.W_dec.data

    def after_batch(self, z: Tensor) -> None:
        """Hook for state updated from training batches (BatchTopK's threshold)."""


@torch.no_grad()
def nearest_latents(sae: Sae, latent: int, n: int) -> list[tuple[int, float]]:
    """The ``n`` other latents whose decoder directions are nearest to ``latent``'s by cosine, as
    ``(latent, cosine)`` pairs, best first (ties: lower index first); a zero decoder row has cosine 0."""
    sae.check_index(latent)
    if n < 0:
        raise InvalidInputError(f"number of neighbours must be >= 0, got {n}")
    W_dec = sae.W_dec.detach().float()
    norms = W_dec.norm(dim=-1)
    denominators = norms * norms[latent]
    cosines = torch.where(denominators > 0, W_dec @ W_dec[latent] / denominators, 0.0).cpu()
    order = cosines.sort(descending=True, stable=True).indices
    return [(int(k), float(cosines[k])) for k in order[order != latent][:n]]


def dense_init_scale(cfg: SaeConfig) -> float:
    """About half the latents fire at init, each adding ``(x . d) d``; this keeps ``x_hat`` near ``x``."""
    return min(1.0, 2.0 * cfg.d_in / cfg.d_sae)


class ReluSae(Sae):
    cfg: ReluConfig

    def encoder_init_scale(self) -> float:
        return dense_init_scale(self.cfg)

    def activate(self, pre: Tensor) -> Tensor:
        return pre.relu()

    def sparsity_loss(self, pre: Tensor, z: Tensor) -> Tensor:
        return self.cfg.l1_coeff * z.abs().sum(-1).mean()


class TopKSae(Sae):
    cfg: TopKConfig

    def activate(self, pre: Tensor) -> Tensor:
        values, indices = pre.topk(self.cfg.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, indices, values.relu())


class BatchTopKSae(TopKSae):
    """Training: top ``k * batch`` activations over the batch. Inference: ``pre > threshold``."""

    cfg: BatchTopKConfig
    threshold: Tensor
    threshold_updates: Tensor

    def __init__(self, cfg: BatchTopKConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__(cfg, generator=generator)
        self.register_buffer("threshold", torch.zeros(()))
        self.register_buffer("threshold_updates", torch.zeros((), dtype=torch.long))

    def activate(self, pre: Tensor) -> Tensor:
        if not self.training:
            return pre * (pre > self.threshold)
        flat = pre.relu().flatten()
        values, indices = flat.topk(min(self.cfg.k * flat.numel() // self.cfg.d_sae, flat.numel()))
        return torch.zeros_like(flat).scatter(0, indices, values).view_as(pre)

    @torch.no_grad()
    def after_batch(self, z: Tensor) -> None:
        """Track the smallest kept activation: a running mean at first, then an EMA."""
        active = z[z > 0]
        if active.numel():
            self.threshold_updates += 1
            weight = max(self.cfg.threshold_momentum, 1.0 / float(self.threshold_updates))
            self.threshold.lerp_(active.min(), weight)


class MatryoshkaSae(BatchTopKSae):
    """BatchTopK trained on the mean reconstruction loss of nested prefixes of the dictionary."""

    cfg: MatryoshkaConfig

    def decode_prefix(self, z: Float[Tensor, "*batch d_sae"], size: int) -> Float[Tensor, "*batch d_in"]:
        """Reconstruction from the first ``size`` latents only."""
        if not 0 < size <= self.cfg.d_sae:
            raise InvalidInputError(f"prefix size must be in [1, {self.cfg.d_sae}], got {size}")
        return (z[..., :size] @ self.W_dec[:size] + self.b_pre) / self.input_scale

    def reconstruction_loss(self, x_scaled: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        x_hat_scaled = self.b_pre.expand_as(x_scaled)
        losses = []
        start = 0
        for end in self.cfg.prefixes:
            x_hat_scaled = x_hat_scaled + z[:, start:end] @ self.W_dec[start:end]
            losses.append((x_hat_scaled - x_scaled).pow(2).mean())
            start = end
        return torch.stack(losses).mean(), x_hat_scaled


class _JumpReluFn(torch.autograd.Function):
    """``pre * [pre > theta]``; the gradient to ``theta`` uses a rectangle kernel of width ``bandwidth``."""

    @staticmethod
    def forward(ctx, pre: Tensor, theta: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, theta)
        ctx.bandwidth = bandwidth
        return pre * (pre > theta)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        pre, theta = ctx.saved_tensors
        near = ((pre - theta).abs() < ctx.bandwidth / 2).to(grad.dtype)
        grad_theta = -(theta / ctx.bandwidth) * near * grad
        return grad * (pre > theta), grad_theta.reshape(-1, theta.shape[-1]).sum(0), None


class _StepFn(torch.autograd.Function):
    """``[pre > theta]`` with a straight-through gradient to ``theta`` (for the L0 penalty)."""

    @staticmethod
    def forward(ctx, pre: Tensor, theta: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, theta)
        ctx.bandwidth = bandwidth
        return (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        pre, theta = ctx.saved_tensors
        near = ((pre - theta).abs() < ctx.bandwidth / 2).to(grad.dtype)
        grad_theta = -(1.0 / ctx.bandwidth) * near * grad
        return torch.zeros_like(pre), grad_theta.reshape(-1, theta.shape[-1]).sum(0), None


class JumpReluSae(Sae):
    cfg: JumpReluConfig

    def encoder_init_scale(self) -> float:
        return dense_init_scale(self.cfg)

    def __init__(self, cfg: JumpReluConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__(cfg, generator=generator)
        self.log_threshold = nn.Parameter(
            torch.full((cfg.d_sae,), float(torch.tensor(cfg.init_threshold).log()))
        )

    def activate(self, pre: Tensor) -> Tensor:
        return _JumpReluFn.apply(pre, self.log_threshold.exp(), self.cfg.bandwidth)

    def sparsity_loss(self, pre: Tensor, z: Tensor) -> Tensor:
        l0 = _StepFn.apply(pre, self.log_threshold.exp(), self.cfg.bandwidth)
        return self.cfg.l0_coeff * l0.sum(-1).mean()
