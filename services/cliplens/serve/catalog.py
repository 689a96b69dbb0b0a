"""What the application serves: its model ids and the SAEs of the store's catalog on those models."""

from __future__ import annotations

from dataclasses import dataclass

from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.serve.loading import sae_bytes
from cliplens.serve.settings import AppSettings
from cliplens.store import ObjectStore, SaeRecord, list_saes, read_sae_record, topk_results_key


@dataclass(frozen=True)
class ServedSae:
    record: SaeRecord
    has_feature_index: bool


class Catalog:
    """The served model ids and SAEs, read from the store once (at replica start)."""

    def __init__(self, settings: AppSettings, store: ObjectStore) -> None:
        self.model_ids = list(settings.models)
        records = (
            [read_sae_record(store, sae_id) for sae_id in settings.sae_ids]
            if settings.sae_ids
            else [record for record in list_saes(store) if record.cfg.model_id in self.model_ids]
        )
        for record in records:
            if record.cfg.model_id not in self.model_ids:
                raise InvalidInputError(
                    f"SAE '{record.sae_id}' needs model '{record.cfg.model_id}', which is not served"
                )
        # An imported SAE has no activation run here (empty run id), so no feature index yet.
        self.saes = {
            record.sae_id: ServedSae(
                record, bool(record.run_id) and store.exists(topk_results_key(record.run_id, record.sae_id))
            )
            for record in records
        }

    def check_model(self, model_id: str, field: str = "model_id") -> str:
        if model_id not in self.model_ids:
            raise NotFoundError(f"{field}: unknown model '{model_id}'; served: {', '.join(self.model_ids)}")
        return model_id

    def sae(self, sae_id: str, field: str = "sae_id") -> SaeRecord:
        served = self.saes.get(sae_id)
        if served is None:
            raise NotFoundError(f"{field}: unknown SAE '{sae_id}'; served: {', '.join(sorted(self.saes))}")
        return served.record

    def indexed_sae(self, sae_id: str, field: str = "sae_id") -> SaeRecord:
        """A served SAE with a feature index; :class:`NotFoundError` saying how to build one otherwise."""
        record = self.sae(sae_id, field)
        if not self.saes[sae_id].has_feature_index:
            raise NotFoundError(
                f"{field}: SAE '{sae_id}' has no feature index: rank its latents' top inputs with "
                "`cliplens topk` (or `cliplens index`) on an activation run of its model and site"
            )
        return record

    def check_latent(self, sae_id: str, latent: int, field: str = "latent") -> int:
        d_sae = self.sae(sae_id).cfg.d_sae
        if not 0 <= latent < d_sae:
            raise NotFoundError(f"{field}: SAE '{sae_id}' has no latent {latent} (it has 0..{d_sae - 1})")
        return latent


def resident_sae_limit(settings: AppSettings, store: ObjectStore) -> int:
    """How many SAEs a replica may hold: the configured count, capped by the memory budget divided
    by the largest served SAE."""
    catalog = Catalog(settings, store)
    largest = max(
        (sae_bytes(s.record.cfg.d_in, s.record.cfg.d_sae) for s in catalog.saes.values()), default=1
    )
    by_budget = int(settings.sae_cache.memory_budget_mb * 1024 * 1024 // largest)
    return max(1, min(settings.sae_cache.max_saes_per_replica, by_budget))
