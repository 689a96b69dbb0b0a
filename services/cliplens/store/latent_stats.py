"""The durable form of per-latent statistics (firing counts, histogram, label counts) of an SAE.

Stored at ``runs/<run_id>/topk/<sae_id>.stats.parquet``, one row per latent in latent order, with
columns ``latent`` (int32), ``fires`` and ``rows`` (int64), ``histogram_edges`` (list<float32>),
``histogram_counts`` (list<int64>) and ``label_counts`` (JSON object as a string).
"""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq

from cliplens.store.objects import ObjectStore
from cliplens.store.runs import run_prefix
from cliplens.store.topk_cache import LatentStats

SCHEMA = pa.schema(
    [
        ("latent", pa.int32()),
        ("fires", pa.int64()),
        ("rows", pa.int64()),
        ("histogram_edges", pa.list_(pa.float32())),
        ("histogram_counts", pa.list_(pa.int64())),
        ("label_counts", pa.string()),
    ]
)


def latent_stats_key(run_id: str, sae_id: str) -> str:
    return f"{run_prefix(run_id)}topk/{sae_id}.stats.parquet"


def write_latent_stats(store: ObjectStore, run_id: str, sae_id: str, stats: list[LatentStats]) -> str:
    """Write one row per latent (index = position in ``stats``); returns the key."""
    table = pa.table(
        {
            "latent": list(range(len(stats))),
            "fires": [s.fires for s in stats],
            "rows": [s.rows for s in stats],
            "histogram_edges": [s.histogram_edges for s in stats],
            "histogram_counts": [s.histogram_counts for s in stats],
            "label_counts": [json.dumps(s.label_counts, sort_keys=True) for s in stats],
        },
        schema=SCHEMA,
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    key = latent_stats_key(run_id, sae_id)
    store.put_bytes(key, sink.getvalue())
    return key


def read_latent_stats(store: ObjectStore, run_id: str, sae_id: str) -> list[LatentStats]:
    """Every latent's stats in latent order; :class:`NotFoundError` if never written."""
    table = pq.read_table(io.BytesIO(store.get_bytes(latent_stats_key(run_id, sae_id))))
    return [
        LatentStats(
            fires=int(row["fires"]),
            rows=int(row["rows"]),
            histogram_edges=list(row["histogram_edges"]),
            histogram_counts=list(row["histogram_counts"]),
            label_counts=json.loads(row["label_counts"]),
        )
        for row in sorted(table.to_pylist(), key=lambda r: r["latent"])
    ]
