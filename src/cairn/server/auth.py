"""Who is calling: an API key or an OIDC/JWT bearer token, turned into a :class:`Principal`.

Both paths end in the database. An API key names its user; a JWT names a user by a claim, and
that user's rights (groups, admin flag, disabled) are the ones stored in cairn, because row-level
security in PostgreSQL resolves them from there on every query. When a groups claim is
configured, the identity provider is authoritative for memberships: the user is created on first
sight and their cairn groups are made to match the token's (mapped) groups before the request
runs. A token never makes anyone an administrator; that flag is only set with ``cairn users``.

Token checks: the signature with a key of the algorithm's own family only (the HMAC secret for
HS*, the JWKS or PEM public key for RS/PS/ES/EdDSA, so a public key can never be used as an HMAC
secret), ``alg`` among the configured ones (``none`` can never be configured), and ``exp``,
``iss`` and ``aud`` present and valid, with a small leeway for clock skew.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import jwt
from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cairn.errors import AuthError, CairnError, ConfigError, Forbidden, InputError
from cairn.index.principals import KEY_PREFIX
from cairn.server.config import HMAC_ALGORITHMS, ServerSettings
from cairn.server.context import get_context
from cairn.types import Principal

if TYPE_CHECKING:
    from cairn.index.principals import PrincipalStore

_GROUP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

bearer = HTTPBearer(
    auto_error=False,
    description="An API key (`cairn keys create --user NAME`) or an OIDC access token.",
)


class IdentityProviderUnavailable(CairnError):
    status = 503
    code = "identity_provider_unavailable"


class JwtVerifier:
    def __init__(self, config: ServerSettings, principals: PrincipalStore) -> None:
        if not config.jwt_enabled:
            raise ConfigError("JWT verification needs CAIRN_SERVER_JWT_ISSUER")
        self.config = config
        self.principals = principals
        self.secret = config.jwt_secret.get_secret_value().encode() if config.jwt_secret is not None else None
        self.public_key = _load_public_key(config.jwt_public_key) if config.jwt_public_key else None
        self.jwks = (
            jwt.PyJWKClient(config.jwt_jwks_url, cache_keys=True, lifespan=300, timeout=10)
            if config.jwt_jwks_url
            else None
        )

    def claims(self, token: str) -> dict[str, Any]:
        refused = AuthError("invalid bearer token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise refused from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.config.jwt_algorithms:
            raise refused
        key = self._key(algorithm, token)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.config.jwt_audience,
                issuer=self.config.jwt_issuer,
                leeway=self.config.jwt_leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(
                "the bearer token has expired", hint="get a fresh token from the identity provider"
            ) from None
        except jwt.PyJWTError:
            raise refused from None
        return claims

    def _key(self, algorithm: str, token: str) -> Any:
        if algorithm in HMAC_ALGORITHMS:
            if self.secret is None:
                raise AuthError("invalid bearer token")
            return self.secret
        if self.public_key is not None:
            return self.public_key
        if self.jwks is None:
            raise AuthError("invalid bearer token")
        try:
            return self.jwks.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError:
            raise IdentityProviderUnavailable(
                "the identity provider's signing keys cannot be fetched", hint="retry shortly"
            ) from None
        except jwt.PyJWTError:
            raise AuthError("invalid bearer token") from None

    def principal(self, token: str) -> Principal:
        claims = self.claims(token)
        name = claims.get(self.config.jwt_user_claim)
        if not isinstance(name, str) or not name:
            raise AuthError(f"the token has no {self.config.jwt_user_claim!r} claim naming the user")
        if self.config.jwt_groups_claim is None:
            return self.principals.resolve(name)
        groups = self.mapped_groups(claims.get(self.config.jwt_groups_claim))
        return self._provisioned(name, groups)

    def mapped_groups(self, value: object) -> list[str]:
        """The token's groups as cairn group names; names cairn cannot store are dropped."""
        if isinstance(value, str):
            raw: Iterable[object] = re.split(r"[\s,]+", value)
        elif isinstance(value, list | tuple):
            raw = value
        else:
            raw = ()
        mapping = self.config.jwt_group_map
        names = []
        for item in raw:
            if not isinstance(item, str) or not item:
                continue
            name = mapping.get(item) if mapping else item.lstrip("/")
            if name and name != "everyone" and _GROUP_NAME.match(name):
                names.append(name)
        return sorted(set(names))

    def _provisioned(self, name: str, groups: list[str]) -> Principal:
        known = self.principals.list_users([name])
        if not known:
            try:
                self.principals.add_user(name, groups)
            except InputError as exc:
                if "already exists" not in exc.message:
                    raise AuthError(f"the token's user name {name!r} is not a valid cairn user name") from None
        elif known[0].disabled:
            raise AuthError(f"unknown or disabled user {name!r}")
        principal = self.principals.resolve(name)
        if sorted(principal.groups) != groups:
            self.principals.update_user(name, groups=groups)
            principal = self.principals.resolve(name)
        return principal


def _load_public_key(value: str) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    text = value if value.lstrip().startswith("-----BEGIN") else Path(value).expanduser().read_text(encoding="utf-8")
    try:
        return load_pem_public_key(text.encode())
    except ValueError as exc:
        raise ConfigError(f"CAIRN_SERVER_JWT_PUBLIC_KEY is not a PEM public key: {exc}") from exc


class Authenticator:
    def __init__(self, principals: PrincipalStore, config: ServerSettings) -> None:
        self.principals = principals
        self.jwt = JwtVerifier(config, principals) if config.jwt_enabled else None

    def authenticate(self, token: str | None) -> Principal:
        """The caller's principal; blocking (database, maybe the JWKS endpoint)."""
        if not token:
            raise AuthError(
                "authentication required",
                hint="send `Authorization: Bearer <API key or token>`; `cairn keys create --user NAME` makes a key",
            )
        if token.startswith(KEY_PREFIX) or self.jwt is None:
            return self.principals.authenticate(token)
        return self.jwt.principal(token)


def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Principal:
    """Authenticate, then charge the caller's rate bucket (a sync dependency: it runs in the thread pool)."""
    context = get_context(request)
    principal = context.authenticator.authenticate(credentials.credentials if credentials else None)
    try:
        context.limiter.take(f"user:{principal.name}")
    except CairnError:
        context.metrics.rate_limited.inc()
        raise
    return principal


def admin_principal(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if not principal.is_admin:
        raise Forbidden("this is for administrators", hint="ask an administrator (`cairn users add NAME --admin`)")
    return principal


Caller = Annotated[Principal, Depends(current_principal)]
Admin = Annotated[Principal, Depends(admin_principal)]
