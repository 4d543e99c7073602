"""Typed settings, read from ``CAIRN_*`` environment variables and an optional ``cairn.toml``.

Built by :func:`get_settings` on demand, never at import, so tests and servers can hold several
configurations side by side.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from cairn.errors import ConfigError
from cairn.guard.pii import PII_KINDS

GuardPolicy = Literal["block", "warn", "log", "off"]
Locality = Literal["local", "onprem", "external"]
Sensitivity = Literal["acl", "kb", "pii"]
Classification = Literal["public", "internal", "confidential", "restricted"]
SENSITIVITY_SIGNALS: tuple[Sensitivity, ...] = ("acl", "kb", "pii")
DEFAULT_EMBEDDER = "onnx:all-minilm-l6-v2"
DEFAULT_GENERATOR = "local:qwen2.5-1.5b-instruct"


def _config_file() -> Path | None:
    explicit = os.environ.get("CAIRN_CONFIG")
    if explicit:
        return Path(explicit)
    for candidate in (Path.cwd() / "cairn.toml", _default_home() / "cairn.toml"):
        if candidate.is_file():
            return candidate
    return None


def _default_home() -> Path:
    return Path(os.environ.get("CAIRN_HOME") or Path.home() / ".cairn").expanduser()


class TierSpec(BaseModel):
    """One generator tier of model routing (docs/model-routing.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="Short name, shown in audit and metrics.")
    generator: str | None = Field(
        None, description="Generator location; unset on the first tier means the `generator` setting."
    )
    locality: Locality | None = Field(
        None, description="Where the model runs; unset: inferred from the location (public hosts are external)."
    )
    min_complexity: float = Field(0.0, ge=0, le=1, description="Questions at least this complex may use the tier.")
    prompt_cost_per_1k: float = Field(0.0, ge=0, description="Price of 1,000 prompt tokens.")
    completion_cost_per_1k: float = Field(0.0, ge=0, description="Price of 1,000 completion tokens.")
    timeout_s: float | None = Field(None, gt=0, description="Request timeout; unset: `request_timeout_s`.")
    api_key_env: str | None = Field(None, description="Environment variable holding this tier's API key.")


class Settings(BaseSettings):
    """Every knob of cairn; ``docs/configuration.md`` documents each one (a test checks that)."""

    model_config = SettingsConfigDict(env_prefix="CAIRN_", extra="ignore", validate_default=True)

    environment: Literal["development", "production"] = Field(
        "development", description="`production` refuses unsafe defaults."
    )
    home: Path = Field(
        default_factory=_default_home,
        description="Data directory: pgdata/ (database), models/, logs/.",
    )
    database_url: str | None = Field(
        None, description="`postgresql://…` of a server with pgvector; unset = embedded Postgres under home."
    )
    embedder: str = Field(DEFAULT_EMBEDDER, description="Embedding backend location (see docs/backends.md).")
    generator: str = Field(DEFAULT_GENERATOR, description="Answer generator location (see docs/backends.md).")
    openai_api_key: SecretStr | None = Field(
        None, description="Bearer token for OpenAI-compatible servers (falls back to OPENAI_API_KEY)."
    )
    request_timeout_s: float = Field(120.0, gt=0, description="Timeout for calls to model servers.")
    chunk_size: int = Field(1200, ge=100, le=20000, description="Target chunk length in characters.")
    chunk_overlap: int = Field(150, ge=0, description="Characters shared by consecutive chunks.")
    max_file_mb: float = Field(100.0, gt=0, description="Files larger than this are skipped with an error.")
    parse_isolation: Literal["process", "off"] = Field(
        "process",
        description="Parse files in worker processes under time and memory limits (`process`), or in-process (`off`).",
    )
    parse_workers: int = Field(2, ge=1, le=64, description="Parser worker processes (files parsed at once).")
    parse_timeout_s: float = Field(
        120.0, gt=0, description="Wall-clock (and CPU) time one file may take to parse; the worker is then killed."
    )
    parse_memory_mb: int = Field(2048, ge=256, description="Address-space limit of a parser worker process.")
    parse_max_unpacked_mb: float = Field(
        200.0, gt=0, description="What a DOCX's zip entries, or one compressed stream of a PDF, may inflate to."
    )
    parse_max_pages: int = Field(10000, ge=1, description="PDFs with more pages are refused.")
    parse_max_depth: int = Field(
        512, ge=16, description="HTML nesting kept; tags nested deeper are dropped (their text is kept)."
    )
    candidates: int = Field(100, ge=1, le=1000, description="Candidates each retriever contributes to fusion.")
    top_k: int = Field(5, ge=1, le=50, description="Passages given to the answer stage.")
    fusion: Literal["rrf", "convex"] = Field("convex", description="How BM25 and dense lists are fused.")
    fusion_alpha: float = Field(
        0.5, ge=0, le=1, description="Weight of the dense list in convex fusion (BM25 gets 1 - alpha)."
    )
    rrf_k: int = Field(60, ge=1, description="The k constant of reciprocal rank fusion.")
    mmr: bool = Field(False, description="Re-order the final passages with maximal marginal relevance.")
    profile: Literal["fast", "default", "quality"] = Field(
        "default", description="Retrieval profile (stages and their parameters, see docs/retrieval.md)."
    )
    kb_profiles: dict[str, Literal["fast", "default", "quality"]] = Field(
        default_factory=dict,
        description='Profile per knowledge base, e.g. `{"legal": "quality"}`, for requests that search only it.',
    )
    mmr_lambda: float = Field(0.7, ge=0, le=1, description="MMR trade-off: 1 = relevance only.")
    bm25_k1: float = Field(0.9, ge=0, le=5, description="BM25 term-frequency saturation (k1).")
    bm25_b: float = Field(0.4, ge=0, le=1, description="BM25 length normalisation (b).")
    hnsw_ef_search: int = Field(200, ge=10, le=1000, description="pgvector HNSW ef_search at query time.")
    min_relevance: float = Field(
        0.35, ge=0, le=1, description="Refuse without calling the LLM when no passage is this relevant."
    )
    max_context_chars: int = Field(3500, ge=500, description="Budget of passage text sent to the generator.")
    max_answer_tokens: int = Field(300, ge=16, le=4096, description="Generation limit for answers.")
    history_turns: int = Field(4, ge=0, le=50, description="Chat turns used to rewrite a follow-up.")
    graph_extractor: str = Field(
        "off", description="Knowledge-graph extraction at ingestion: `off`, `heuristic:`, `spacy:?phrases=1`, `llm:`."
    )
    answer_cache: Literal["off", "exact", "semantic"] = Field(
        "semantic", description="Answer cache: same question (exact) or a near paraphrase (semantic), same rights."
    )
    answer_cache_ttl_s: float = Field(86400.0, gt=0, description="How long a cached answer may be served.")
    answer_cache_semantic_threshold: float = Field(
        0.95, gt=0, le=1, description="Question cosine a semantic cache hit needs (below ~0.93 wrong hits appear)."
    )
    answer_cache_refusals: bool = Field(
        True, description="Cache refusals too (served only while the caller's readable documents are unchanged)."
    )
    answer_cache_max_entries: int = Field(
        10000, ge=1, description="Least recently used entries beyond this are purged."
    )
    tiers: list[TierSpec] = Field(
        default_factory=list,
        description="Generator tiers for model routing, cheapest first (docs/model-routing.md); "
        "empty: one tier, the `generator` setting.",
    )
    sensitivity_signals: list[Sensitivity] = Field(
        default_factory=lambda: list(SENSITIVITY_SIGNALS),
        description="What makes an answer's context sensitive (kept on local/on-prem tiers): `acl` (a passage "
        "not readable by everyone), `kb` (a confidential/restricted knowledge base), `pii` (personal data).",
    )
    kb_classification: dict[str, Classification] = Field(
        default_factory=dict,
        description='Classification per knowledge base, e.g. `{"hr": "confidential"}`; unset KBs are internal.',
    )
    log_level: str = Field("WARNING", description="Level of cairn's log, written to `CAIRN_HOME/logs/cairn.log`.")
    audit_retention_days: float | None = Field(
        None, gt=0, description="`cairn audit purge` deletes audit records older than this; unset keeps all."
    )
    worker_concurrency: int = Field(1, ge=1, le=64, description="Jobs one `cairn worker` process runs at once.")
    worker_batch: int = Field(8, ge=1, le=256, description="Queued files of one sync a worker claims together.")
    worker_lease_s: float = Field(
        60.0, ge=1, le=86400, description="A claimed job's lease; a worker silent this long loses its jobs."
    )
    worker_poll_s: float = Field(1.0, gt=0, le=60, description="How often an idle worker looks for queued jobs.")
    worker_max_attempts: int = Field(
        3, ge=1, le=100, description="Claims a queued job gets before it fails (retries, killed workers)."
    )
    grounding: str = Field(
        "heuristic:", description="Groundedness checker location (`heuristic:`, `heuristic:lexical`)."
    )
    grounding_policy: Literal["off", "annotate", "remove", "refuse"] = Field(
        "remove",
        description="Unsupported answer sentences: remove (never shown), refuse (also refuse when too few "
        "are supported), annotate (shown, marked in JSON), off.",
    )
    grounding_min_supported: float = Field(
        0.5, ge=0, le=1, description="Under `refuse`, the share of supported sentences an answer needs."
    )
    experiments: bool = Field(
        True, description="Assign users to running A/B experiments (docs/experiments.md); off: all get the default."
    )
    experiment_min_samples: int = Field(
        30, ge=1, description="`cairn experiments report` tests a figure only when both samples have this many."
    )
    experiment_alpha: float = Field(
        0.05, gt=0, lt=0.5, description="Significance level of experiment reports (intervals are at 1 - alpha)."
    )
    guard_question_injection: GuardPolicy = Field(
        "warn", description="Prompt injection in a question: block (refuse), warn (answer, flag), log, off."
    )
    guard_document_injection: GuardPolicy = Field(
        "warn",
        description="Passages flagged as injection at ingestion: block (left out), warn (quoted as data), log, off.",
    )
    guard_answer_pii: GuardPolicy = Field(
        "log", description="Personal data in answers: block (redact as [EMAIL]), warn (mask), log, off."
    )
    guard_audit_pii: GuardPolicy = Field(
        "block", description="Personal data in the audit trail: block (redact), warn (mask), log (keep), off."
    )
    guard_output: GuardPolicy = Field(
        "block", description="Links, images and HTML to hosts not allowed in answers: block/warn (removed), log, off."
    )
    guard_allowed_hosts: list[str] = Field(
        default_factory=list, description="Hosts (and subdomains) answers may link to or embed images from."
    )
    guard_injection_threshold: float = Field(
        0.5, gt=0, le=10, description="Injection score at which a question or passage is flagged."
    )
    guard_pii_kinds: list[str] = Field(
        default_factory=lambda: list(PII_KINDS), description="Kinds of personal data the PII guard looks for."
    )
    guard_phone_regions: list[str] = Field(
        default_factory=lambda: ["US", "GB", "DE", "FR"],
        description="National phone formats recognised (numbers with + are always recognised).",
    )
    drift_window_days: float = Field(
        7.0, gt=0, description="Default drift windows: the last N days against the N days before (docs/drift.md)."
    )
    drift_min_samples: int = Field(
        50, ge=2, description="Samples each window needs for a drift verdict; fewer: 'insufficient data'."
    )
    drift_alpha: float = Field(0.01, gt=0, lt=1, description="p-value below which a drift test reports drift.")
    drift_psi_threshold: float = Field(
        0.2, gt=0, description="Population stability index at which topic and score shares report drift."
    )
    drift_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description='Per-signal thresholds overriding the two above, e.g. `{"refusal_rate": 0.001}`.',
    )
    drift_topics: int = Field(
        8, ge=2, le=100, description="Most topic clusters (k-means) fitted on the reference questions."
    )
    drift_permutations: int = Field(
        500, ge=20, le=100000, description="Permutations of the MMD test (p-value resolution)."
    )
    drift_max_samples: int = Field(
        1000, ge=10, description="Most questions per window the MMD and topics use (a seeded random subset beyond)."
    )
    drift_interval_s: float = Field(
        0.0, ge=0, description="How often `cairn serve` recomputes the drift report for its gauges; 0 = never."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = _config_file()
        if config is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config))
        return tuple(sources)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"log_level must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {value!r}")
        return value.upper()

    @field_validator("home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("drift_thresholds")
    @classmethod
    def _known_drift_signals(cls, value: dict[str, float]) -> dict[str, float]:
        if value:  # a typo would otherwise leave a signal on its default threshold without a word
            from cairn.ops.drift.report import DriftConfig

            try:
                DriftConfig(thresholds=value)
            except ConfigError as exc:
                raise ValueError(f"{exc.message} ({exc.hint})" if exc.hint else exc.message) from None
        return value

    @model_validator(mode="after")
    def _coherent_drift(self) -> Settings:
        if self.drift_max_samples < self.drift_min_samples:
            raise ValueError("drift_max_samples must be at least drift_min_samples")
        return self

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"tier names must be unique, got {names}")
        if self.tiers and self.tiers[0].min_complexity != 0:
            raise ValueError("the first tier answers the simplest questions: its min_complexity must be 0")
        if self.environment == "production" and self.database_url is None:
            raise ValueError("production needs CAIRN_DATABASE_URL: the embedded Postgres is for one machine")
        return self

    def api_key(self) -> str | None:
        if self.openai_api_key is not None:
            return self.openai_api_key.get_secret_value()
        return os.environ.get("OPENAI_API_KEY")

    @property
    def models_dir(self) -> Path:
        return self.home / "models"


def get_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, the config file and explicit ``overrides``."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        raise ConfigError(f"invalid settings: {exc}") from exc
