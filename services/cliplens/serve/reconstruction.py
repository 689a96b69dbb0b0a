"""Reconstruction error of a request's rows, as ReconstructResponse reports it."""

from __future__ import annotations

import numpy as np

from cliplens.serve.results import Floats
from cliplens_client.v1 import sae_pb2


def reconstruction_error(x: Floats, x_hat: Floats) -> sae_pb2.ReconstructionError:
    x64, err = x.astype(np.float64), (x - x_hat).astype(np.float64)
    row_sse, row_ss = (err**2).sum(-1), (x64**2).sum(-1)
    sst = ((x64 - x64.mean(0)) ** 2).sum()
    return sae_pb2.ReconstructionError(
        mse=float((err**2).mean()),
        nmse=float(row_sse.sum() / max(row_ss.sum(), 1e-30)),
        explained_variance=float(1 - row_sse.sum() / sst) if x.shape[0] > 1 and sst > 0 else float("nan"),
        row_nmse=(row_sse / np.maximum(row_ss, 1e-30)).tolist(),
    )
