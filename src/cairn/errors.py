"""The one exception tree of cairn.

Every error a user can see derives from :class:`CairnError` and carries the HTTP status a server
should answer with, so the CLI and the API map errors in one place instead of guessing::

    CairnError (500)
    ├── ConfigError (500)            settings that cannot work (bad URL, unknown backend)
    ├── InputError (400)             a request or file the caller must fix
    │   ├── UnsupportedFormat (415)  a file type no loader handles
    │   ├── CorruptDocument (422)    a file that claims a format but cannot be parsed
    │   ├── LimitExceeded (413)      a file refused by a parsing limit (time, memory, size, pages, bomb)
    │   └── GuardBlocked (422)       a question a guard refused under a ``block`` policy
    ├── NotFound (404)               a knowledge base, document or session that does not exist,
    │                                or one the caller may not read (the two are indistinguishable)
    ├── AuthError (401)              an unknown, disabled or unauthenticated caller
    ├── Forbidden (403)              an action (not a resource) the caller's role does not allow
    ├── StoreError (503)             the database is unreachable or inconsistent
    │   └── SchemaMismatch (409)     the index was built with another embedder / schema
    └── ModelError (502)             an embedder or generator backend failed
        └── ModelUnavailable (503)   a model that is not installed or cannot be loaded
"""

from __future__ import annotations


class CairnError(Exception):
    """Base class: ``status`` is the HTTP status, ``code`` a stable machine-readable slug."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"code": self.code, "message": self.message}
        if self.hint:
            body["hint"] = self.hint
        return {"error": body}


class ConfigError(CairnError):
    status = 500
    code = "config_error"


class InputError(CairnError):
    status = 400
    code = "bad_input"


class UnsupportedFormat(InputError):
    status = 415
    code = "unsupported_format"


class CorruptDocument(InputError):
    status = 422
    code = "corrupt_document"


class LimitExceeded(InputError):
    status = 413
    code = "limit_exceeded"


class NotFound(CairnError):
    status = 404
    code = "not_found"


class AuthError(CairnError):
    status = 401
    code = "unauthenticated"


class Forbidden(CairnError):
    status = 403
    code = "forbidden"


class StoreError(CairnError):
    status = 503
    code = "store_unavailable"


class SchemaMismatch(StoreError):
    status = 409
    code = "schema_mismatch"


class ModelError(CairnError):
    status = 502
    code = "model_error"


class ModelUnavailable(ModelError):
    status = 503
    code = "model_unavailable"


class GuardBlocked(InputError):
    status = 422
    code = "guard_blocked"


__all__ = [
    "AuthError",
    "CairnError",
    "ConfigError",
    "CorruptDocument",
    "Forbidden",
    "GuardBlocked",
    "InputError",
    "LimitExceeded",
    "ModelError",
    "ModelUnavailable",
    "NotFound",
    "SchemaMismatch",
    "StoreError",
    "UnsupportedFormat",
]
