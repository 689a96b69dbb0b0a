"""The durable form of top-k results: one parquet per SAE next to its activation run.

Stored at ``runs/<run_id>/topk/<sae_id>.parquet`` with columns ``latent`` (int32), ``rank``
(int32, 0 = highest), ``key`` (string), ``activation`` (float32) and ``label`` (string, nullable).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from cliplens.core.errors import InvalidInputError
from cliplens.store.objects import ObjectStore
from cliplens.store.runs import run_prefix

SCHEMA = pa.schema(
    [
        ("latent", pa.int32()),
        ("rank", pa.int32()),
        ("key", pa.string()),
        ("activation", pa.float32()),
        ("label", pa.string()),
    ]
)


@dataclass(frozen=True)
class TopKRow:
    latent: int
    rank: int
    key: str
    activation: float
    label: str | None


def topk_results_key(run_id: str, sae_id: str) -> str:
    return f"{run_prefix(run_id)}topk/{sae_id}.parquet"


def write_topk_results(store: ObjectStore, run_id: str, sae_id: str, rows: Iterable[TopKRow]) -> str:
    """Write ``rows`` as the SAE's top-k parquet and return its key in ``store``."""
    rows = list(rows)
    table = pa.table(
        {name: [getattr(row, name) for row in rows] for name in SCHEMA.names},
        schema=SCHEMA,
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    key = topk_results_key(run_id, sae_id)
    store.put_bytes(key, sink.getvalue())
    return key


def read_topk_results(store: ObjectStore, run_id: str, sae_id: str) -> list[TopKRow]:
    """The SAE's top-k rows, ordered by latent then rank; :class:`NotFoundError` if never written."""
    table = pq.read_table(io.BytesIO(store.get_bytes(topk_results_key(run_id, sae_id))))
    if table.schema.names != SCHEMA.names:
        raise InvalidInputError(
            f"top-k parquet of {sae_id} has columns {table.schema.names}, expected {SCHEMA.names}"
        )
    rows = [TopKRow(**record) for record in table.to_pylist()]
    return sorted(rows, key=lambda row: (row.latent, row.rank))
