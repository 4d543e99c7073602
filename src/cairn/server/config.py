"""The server's own knobs, read from ``CAIRN_SERVER_*`` so the library's settings stay server-agnostic.

Built on demand by :func:`get_server_settings` (never at import); ``docs/server.md`` documents
every field, and a test checks that it does.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cairn.errors import ConfigError

#: Signature families: a key of one family is never tried with an algorithm of another.
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
PUBLIC_KEY_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAIRN_SERVER_", extra="ignore", validate_default=True)

    host: str = Field("127.0.0.1", description="Interface `cairn serve` binds to.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port `cairn serve` listens on.")
    workers: int = Field(1, ge=1, le=64, description="Worker processes of `cairn serve`.")
    max_upload_mb: float = Field(25.0, gt=0, description="Largest document upload request (413 beyond).")
    max_body_kb: int = Field(256, ge=1, description="Largest body of any other request (413 beyond).")
    rate_per_minute: float = Field(120.0, gt=0, description="Sustained requests per minute per principal (429).")
    burst: int = Field(30, ge=1, description="Requests a principal may make at once before the rate applies.")
    max_question_chars: int = Field(4000, ge=1, description="Longest question or search query accepted.")
    max_concurrent_generations: int = Field(4, ge=1, description="Answers generated at once by this process.")
    max_queued_generations: int = Field(
        16, ge=0, description="Answers allowed to wait for a free generation slot; beyond that 503."
    )
    generation_timeout_s: float = Field(120.0, gt=0, description="Limit for one answer, queueing included (504).")
    request_timeout_s: float = Field(30.0, gt=0, description="Limit for searches and other reads (504).")
    jwt_issuer: str | None = Field(None, description="Required `iss` of bearer JWTs; unset = JWTs are refused.")
    jwt_audience: str | None = Field(None, description="Required `aud` of bearer JWTs.")
    jwt_algorithms: list[str] = Field(default_factory=lambda: ["RS256"], description="Accepted JWT algorithms.")
    jwt_jwks_url: str | None = Field(None, description="JWKS URL of the identity provider (public keys by `kid`).")
    jwt_public_key: str | None = Field(None, description="A static PEM public key instead of a JWKS URL.")
    jwt_secret: SecretStr | None = Field(None, description="Shared secret for HS256/384/512 tokens.")
    jwt_user_claim: str = Field("sub", description="Claim holding the cairn user name.")
    jwt_groups_claim: str | None = Field(
        None, description="Claim holding the user's groups; when set the IdP is authoritative for memberships."
    )
    jwt_group_map: dict[str, str] = Field(
        default_factory=dict, description="IdP group -> cairn group; when set, unmapped IdP groups are ignored."
    )
    jwt_leeway_s: float = Field(30.0, ge=0, le=600, description="Clock skew tolerated on `exp`/`nbf`/`iat`.")
    cors_origins: list[str] = Field(default_factory=list, description="Browser origins allowed to call the API.")

    @field_validator("jwt_algorithms")
    @classmethod
    def _known_algorithms(cls, value: list[str]) -> list[str]:
        known = (*HMAC_ALGORITHMS, *PUBLIC_KEY_ALGORITHMS)
        unknown = [a for a in value if a not in known]
        if unknown:
            raise ValueError(f"unsupported JWT algorithm(s) {unknown} (`none` is never accepted); use {known}")
        return value

    @model_validator(mode="after")
    def _coherent_jwt(self) -> ServerSettings:
        if self.jwt_issuer is None:
            return self
        wants_hmac = any(a in HMAC_ALGORITHMS for a in self.jwt_algorithms)
        wants_public = any(a in PUBLIC_KEY_ALGORITHMS for a in self.jwt_algorithms)
        if wants_hmac and self.jwt_secret is None:
            raise ValueError("an HS* JWT algorithm needs CAIRN_SERVER_JWT_SECRET")
        if wants_public and not (self.jwt_jwks_url or self.jwt_public_key):
            raise ValueError("an RS/PS/ES/EdDSA JWT algorithm needs CAIRN_SERVER_JWT_JWKS_URL or _JWT_PUBLIC_KEY")
        if self.jwt_audience is None:
            raise ValueError("CAIRN_SERVER_JWT_AUDIENCE is required with CAIRN_SERVER_JWT_ISSUER")
        return self

    @property
    def jwt_enabled(self) -> bool:
        return self.jwt_issuer is not None

    @property
    def max_body_bytes(self) -> int:
        return self.max_body_kb * 1024

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def get_server_settings(**overrides: Any) -> ServerSettings:
    try:
        return ServerSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        raise ConfigError(f"invalid server settings: {exc}") from exc
