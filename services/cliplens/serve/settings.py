"""Application settings: a Serve config's ``args`` and ``CLIPLENS_*`` environment variables, validated
once when the app is built and handed to every replica.

Arguments win over the environment, which wins over the defaults here. Environment names are
``CLIPLENS_`` + the field (``CLIPLENS_REDIS_URL``, ``CLIPLENS_DEVICE``, ``CLIPLENS_S3_ENDPOINT``...;
nested fields with ``__``: ``CLIPLENS_LIMITS__MAX_IMAGES``), except the store, ``CLIPLENS_STORE``,
as for the batch jobs. Replicas read no environment of their own.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cliplens.store import ObjectStore, S3Config, open_store
from cliplens.store.objects import DEFAULT_LOCAL_ROOT, DEFAULT_PART_SIZE, MIN_PART_SIZE, STORE_ENV
from cliplens.store.topk_cache import DEFAULT_REDIS_URL

DEFAULT_STORE = str(DEFAULT_LOCAL_ROOT)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Strict):
    """Per-request limits; a request beyond one fails with INVALID_ARGUMENT naming the field."""

    max_image_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=40_000_000, gt=0)
    max_images: int = Field(default=64, gt=0)
    max_texts: int = Field(default=256, gt=0)
    max_attribution_texts: int = Field(default=64, gt=0)
    max_class_names: int = Field(default=1000, gt=0)
    max_text_chars: int = Field(default=1000, gt=0)
    max_rows: int = Field(default=65_536, gt=0)
    max_edits: int = Field(default=64, gt=0)
    max_top_k: int = Field(default=1000, gt=0)
    max_top_n: int = Field(default=100, gt=0)


class BatchSettings(_Strict):
    """``@serve.batch`` settings of one deployment.

    ``max_batch_size`` counts rows for the encoder (images or texts per model call; bigger requests
    are split) and requests for the attribution engine.
    """

    max_batch_size: int = Field(default=32, gt=0)
    batch_wait_timeout_s: float = Field(default=0.005, ge=0)


class SaeCacheSettings(_Strict):
    """Resident SAEs per replica: at most ``max_saes_per_replica``, and no more than the memory budget
    allows for the largest SAE served (least recently used ones are evicted first)."""

    memory_budget_mb: float = Field(default=2048, gt=0)
    max_saes_per_replica: int = Field(default=8, gt=0)


class AuthSettings(_Strict):
    """Bearer tokens, one per line in ``token_file`` and/or comma-separated in ``$token_env``.

    With ``enabled`` and no token found, the application refuses to start.
    """

    enabled: bool = False
    token_file: str | None = None
    token_env: str | None = "CLIPLENS_API_TOKENS"


class WebSettings(_Strict):
    """The web pages at ``/ui`` (:mod:`cliplens.serve.web`).

    A login session lasts ``session_hours``; each page's API calls share ``timeout_s``; the latent
    and explain pages show ``top_latents`` latents and the SAE page lists ``latents_per_page``.
    """

    session_hours: float = Field(default=12, gt=0)
    timeout_s: float = Field(default=60, gt=0)
    top_latents: int = Field(default=8, gt=0)
    latents_per_page: int = Field(default=128, gt=0)


class DirectPortSettings(_Strict):
    """A direct gRPC port served inside replicas, beside the ingress's port (0: not served).

    Calls on it bypass Serve's queue limits, so ``max_concurrent_rpcs`` bounds them per replica:
    beyond it a call fails with RESOURCE_EXHAUSTED. With a certificate and key it speaks TLS.
    """

    port: int = Field(default=0, ge=0, le=65535)
    host: str = "0.0.0.0"
    max_concurrent_rpcs: int = Field(default=256, gt=0)
    # PEM files, read in the replica: with both set the port speaks TLS, else plaintext.
    tls_cert_file: str | None = None
    tls_key_file: str | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> DirectPortSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file: set both (TLS) or neither (plaintext)")
        return self


class AppSettings(BaseSettings):
    """Everything the application needs; nothing about it is hard-coded elsewhere."""

    model_config = SettingsConfigDict(
        env_prefix="CLIPLENS_", env_nested_delimiter="__", extra="forbid", frozen=True, populate_by_name=True
    )

    models: list[str] = Field(min_length=1)
    model_registry: str | None = None
    # The store of SAEs and runs (s3://bucket/prefix or a path); None: ~/.cache/cliplens/store.
    store_uri: str | None = Field(default=None, validation_alias=STORE_ENV)
    # Where Image.object_key is read from; None: object keys are refused.
    image_store_uri: str | None = None
    # The feature index's cache; None: redis://127.0.0.1:6379/0.
    redis_url: str | None = None
    # S3 (MinIO) for s3:// stores: endpoint host:port or an http(s):// URL, credentials, TLS, part size.
    s3_endpoint: str | None = None
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_secure: bool = True
    s3_region: str | None = None
    s3_part_size: int = Field(default=DEFAULT_PART_SIZE, ge=MIN_PART_SIZE)
    sae_ids: list[str] = Field(default_factory=list)
    device: str = "auto"
    dtype: str = "fp32"
    limits: Limits = Limits()
    encoder_batch: BatchSettings = BatchSettings()
    # No wait: attribution is latency-bound; requests queued while a batch runs form the next one.
    attribution_batch: BatchSettings = BatchSettings(max_batch_size=8, batch_wait_timeout_s=0.0)
    sae_cache: SaeCacheSettings = SaeCacheSettings()
    auth: AuthSettings = AuthSettings()
    web: WebSettings = WebSettings()
    # FeatureService from the FeatureGateway deployment (0: no gateway).
    feature_port: DirectPortSettings = DirectPortSettings()
    # AttributionService from each Attributor replica: no proxy or actor hop (0: none).
    attribution_port: DirectPortSettings = DirectPortSettings()
    # TopActivations' k, and AttributeLatents' and SearchLatents' top_n, when a request says 0.
    top_k_default: int = Field(default=16, gt=0)
    top_n_default: int = Field(default=10, gt=0)
    # Labels of each latent in AttributeLatents and SearchLatents answers, and in LatentInfo.
    labels_per_latent: int = Field(default=3, ge=0)
    labels_in_latent_info: int = Field(default=10, ge=0)
    # Nearest latents by decoder cosine in LatentInfo.
    neighbours_in_latent_info: int = Field(default=8, ge=0)
    # Redis reads wait this long before the store answers instead.
    redis_timeout_s: float = Field(default=0.5, gt=0)
    # Text embeddings kept per Attributor replica (least recently used evicted; 0: none kept).
    text_cache_size: int = Field(default=4096, ge=0)
    # Threads per Encoder / Attributor replica that decode, resize and crop images. They share the
    # replica's GIL with the model's Python, so more than one rarely helps on CPU.
    preprocess_threads: int = Field(default=1, gt=0)

    @model_validator(mode="after")
    def _unique_models(self) -> AppSettings:
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"models must be unique, got {self.models}")
        return self

    @model_validator(mode="after")
    def _s3_for_s3_stores(self) -> AppSettings:
        for name in ("store_uri", "image_store_uri"):
            uri = getattr(self, name)
            if uri and uri.startswith("s3://") and self.s3_endpoint is None:
                raise ValueError(f"{name} {uri} needs s3_endpoint (CLIPLENS_S3_ENDPOINT)")
        return self

    def s3(self) -> S3Config | None:
        """The S3 connection of ``s3://`` stores; None without an endpoint."""
        if self.s3_endpoint is None:
            return None
        endpoint, secure = self.s3_endpoint, self.s3_secure
        for scheme, tls in (("https://", True), ("http://", False)):
            if endpoint.startswith(scheme):
                endpoint, secure = endpoint[len(scheme) :].rstrip("/"), tls
        return S3Config(
            endpoint=endpoint,
            access_key=self.s3_access_key.get_secret_value() if self.s3_access_key else None,
            secret_key=self.s3_secret_key.get_secret_value() if self.s3_secret_key else None,
            secure=secure,
            region=self.s3_region,
            part_size=self.s3_part_size,
        )

    @property
    def cache_url(self) -> str:
        """The Redis URL of the feature-index cache."""
        return self.redis_url or DEFAULT_REDIS_URL

    def store(self) -> ObjectStore:
        return open_store(self.store_uri or DEFAULT_STORE, self.s3())

    def image_store(self) -> ObjectStore | None:
        return open_store(self.image_store_uri, self.s3()) if self.image_store_uri else None
