"""Storage: object stores (S3 or local), activation runs, input readers, the Redis top-k cache and
the cached head descriptions and rankings (:mod:`cliplens.store.head_results`, not imported here:
it needs the CLIP models, which the workers of the other jobs do not).

Depends on :mod:`cliplens.core` only; nothing in the core imports this package.
"""

from cliplens.store.decoding import DEFAULT_MAX_PIXELS, Skipped, decode_image
from cliplens.store.errors import (
    RunIncompleteError,
    RunNotCommittedError,
    StoreAccessError,
    StoreUnavailableError,
)
from cliplens.store.feature_index import (
    TopKResult,
    fill_cache,
    has_results,
    load_results,
    result_ids,
    save_results,
)
from cliplens.store.input_shards import InputShard, InputSource, list_input_shards, open_inputs
from cliplens.store.latent_stats import read_latent_stats, write_latent_stats
from cliplens.store.objects import (
    LocalStore,
    ObjectInfo,
    ObjectStore,
    S3Config,
    S3Store,
    open_object,
    open_store,
)
from cliplens.store.prefetch import prefetch
from cliplens.store.readers import Record, read_class_names, read_input_shard, read_inputs
from cliplens.store.run_reader import ActivationRun, ShuffledBatches, input_folder
from cliplens.store.run_writer import ActivationWriter
from cliplens.store.runs import Manifest, RunSpec, ShardInfo, run_id
from cliplens.store.saes import SaeRecord, list_saes, load_sae_from_store, read_sae_record, save_sae_to_store
from cliplens.store.topk_cache import AsyncTopKReader, LatentStats, TopKCache, TopKEntry
from cliplens.store.topk_results import TopKRow, read_topk_results, topk_results_key, write_topk_results

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ActivationRun",
    "ActivationWriter",
    "AsyncTopKReader",
    "InputShard",
    "InputSource",
    "LatentStats",
    "LocalStore",
    "Manifest",
    "ObjectInfo",
    "ObjectStore",
    "Record",
    "RunIncompleteError",
    "RunNotCommittedError",
    "RunSpec",
    "S3Config",
    "S3Store",
    "SaeRecord",
    "ShardInfo",
    "ShuffledBatches",
    "Skipped",
    "StoreAccessError",
    "StoreUnavailableError",
    "TopKCache",
    "TopKEntry",
    "TopKResult",
    "TopKRow",
    "decode_image",
    "fill_cache",
    "has_results",
    "input_folder",
    "list_input_shards",
    "list_saes",
    "load_results",
    "load_sae_from_store",
    "open_inputs",
    "open_object",
    "open_store",
    "prefetch",
    "read_class_names",
    "read_input_shard",
    "read_inputs",
    "read_latent_stats",
    "read_sae_record",
    "read_topk_results",
    "result_ids",
    "run_id",
    "save_results",
    "save_sae_to_store",
    "topk_results_key",
    "write_latent_stats",
    "write_topk_results",
]
