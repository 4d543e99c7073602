"""Authentication and roles: every endpoint refuses anonymous callers; API keys; OIDC/JWT bearer tokens."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from cairn.errors import ConfigError
from cairn.server.config import get_server_settings
from cairn.server.routes.health import PUBLIC_PATHS

from .conftest import KB, World

ISSUER = "https://idp.example.test/realms/acme"
AUDIENCE = "cairn"
SECRET = "a-shared-hmac-secret-of-at-least-32-bytes!"

ADMIN_ONLY = {
    ("POST", "/api/kbs"),
    ("DELETE", "/api/kbs/{kb}"),
    ("POST", "/api/kbs/{kb}/documents"),
    ("DELETE", "/api/kbs/{kb}/documents/{doc_id}"),
    ("GET", "/api/audit"),
    ("GET", "/api/audit/verify"),
    ("GET", "/api/audit/export"),
    ("GET", "/api/stats"),
}


def _operations(client: TestClient) -> list[tuple[str, str]]:
    schema = client.get("/openapi.json").json()
    return [(method.upper(), path) for path, item in schema["paths"].items() for method in item]


def _concrete(path: str) -> str:
    return (
        path.replace("{kb}", KB)
        .replace("{doc_id}", "1")
        .replace("{chunk_id}", "1")
        .replace("{session_id}", "00000000-0000-0000-0000-000000000000")
        .replace("{model}", KB)
    )


def test_every_endpoint_in_the_schema_rejects_anonymous_calls(client: TestClient, world: World) -> None:
    operations = _operations(client)
    assert len(operations) >= 25
    checked = 0
    for method, path in operations:
        if path in PUBLIC_PATHS:
            assert client.request(method, path).status_code == 200
            continue
        for headers in ({}, {"Authorization": "Bearer cairn_0123456789ab_forged"}, {"Authorization": "Basic eDp5"}):
            response = client.request(method, _concrete(path), headers=headers)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.json()["error"]["code"] == "unauthenticated"
            assert response.headers["www-authenticate"] == "Bearer"
        checked += 1
    assert checked == len(operations) - len(PUBLIC_PATHS)


def test_admin_only_operations_are_refused_to_users(client: TestClient, world: World) -> None:
    refused = set()
    for method, path in _operations(client):
        response = client.request(method, _concrete(path), headers=world.auth("alice"))
        if response.status_code == 403:
            assert response.json()["error"]["code"] == "forbidden"
            refused.add((method, path))
        admin = client.request(method, _concrete(path), headers=world.auth("root"))
        assert admin.status_code != 403, (method, path)
    assert refused == ADMIN_ONLY


def test_revoked_keys_and_disabled_users_are_refused(client: TestClient, world: World) -> None:
    assert client.get("/api/me", headers=world.auth("bob")).status_code == 200
    prefix = world.keys["bob"].split("_")[1]
    world.cairn.principals.revoke_key(prefix)
    assert client.get("/api/me", headers=world.auth("bob")).status_code == 401
    world.cairn.principals.update_user("alice", disabled=True)
    refused = client.get("/api/me", headers=world.auth("alice"))
    assert refused.status_code == 401 and refused.json()["error"]["message"] == "invalid API key"


# -- JWT ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "f81d4fae", "preferred_username": "alice"}
    claims |= {"iat": now, "exp": now + 300}
    claims |= changes
    return {k: v for k, v in claims.items() if v is not None}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture
def jwt_client(make_client: Callable[..., TestClient], rsa_key: rsa.RSAPrivateKey) -> TestClient:
    return make_client(
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwt_algorithms=["RS256", "HS256"],
        jwt_public_key=_public_pem(rsa_key),
        jwt_secret=SECRET,
        jwt_user_claim="preferred_username",
    )


def test_jwt_valid_tokens_act_for_the_named_user(jwt_client: TestClient, rsa_key: rsa.RSAPrivateKey) -> None:
    token = jwt.encode(_claims(), rsa_key, algorithm="RS256")
    me = jwt_client.get("/api/me", headers=_bearer(token))
    assert me.status_code == 200 and me.json() == {"name": "alice", "groups": ["hr"], "admin": False}
    hmac_token = jwt.encode(_claims(), SECRET, algorithm="HS256")
    assert jwt_client.get("/api/me", headers=_bearer(hmac_token)).json()["name"] == "alice"
    hits = jwt_client.post("/api/search", json={"query": "parental leave", "kbs": [KB]}, headers=_bearer(token))
    assert hits.json()["hits"][0]["source"] == "hr/parental-leave.txt"


@pytest.mark.parametrize(
    "case",
    ["wrong issuer", "wrong audience", "expired", "no exp", "unknown user", "no user claim", "other key"],
)
def test_jwt_bad_tokens_are_refused(jwt_client: TestClient, rsa_key: rsa.RSAPrivateKey, case: str) -> None:
    key: Any = rsa_key
    claims = {
        "wrong issuer": _claims(iss="https://evil.example"),
        "wrong audience": _claims(aud="another-app"),
        "expired": _claims(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200),
        "no exp": _claims(exp=None),
        "unknown user": _claims(preferred_username="mallory"),
        "no user claim": _claims(preferred_username=None),
        "other key": _claims(),
    }[case]
    if case == "other key":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    response = jwt_client.get("/api/me", headers=_bearer(jwt.encode(claims, key, algorithm="RS256")))
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthenticated"
    if case == "expired":
        assert "expired" in response.json()["error"]["message"]


def test_jwt_alg_none_and_key_confusion_are_refused(jwt_client: TestClient, rsa_key: rsa.RSAPrivateKey) -> None:
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}."
    assert jwt_client.get("/api/me", headers=_bearer(unsigned)).status_code == 401
    # HS256 "signed" with the server's public key, the classic RS/HS confusion
    public = _public_pem(rsa_key).encode()
    import hashlib
    import hmac

    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(_claims())}"
    signature = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    forged = signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    assert jwt_client.get("/api/me", headers=_bearer(forged)).status_code == 401
    not_configured = jwt.encode(_claims(), rsa_key, algorithm="RS512")
    assert jwt_client.get("/api/me", headers=_bearer(not_configured)).status_code == 401
    assert jwt_client.get("/api/me", headers=_bearer("not.a.jwt")).status_code == 401


def test_settings_refuse_alg_none_and_incomplete_jwt_setups() -> None:
    with pytest.raises(ConfigError, match="none"):
        get_server_settings(jwt_algorithms=["none"])
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        get_server_settings(jwt_issuer=ISSUER, jwt_audience=AUDIENCE, jwt_algorithms=["HS256"])
    with pytest.raises(ConfigError, match="JWKS_URL"):
        get_server_settings(jwt_issuer=ISSUER, jwt_audience=AUDIENCE, jwt_algorithms=["RS256"])
    with pytest.raises(ConfigError, match="AUDIENCE"):
        get_server_settings(jwt_issuer=ISSUER, jwt_algorithms=["HS256"], jwt_secret=SECRET)


def test_jwt_groups_claim_provisions_users_and_syncs_memberships(
    make_client: Callable[..., TestClient], world: World
) -> None:
    client = make_client(
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwt_algorithms=["HS256"],
        jwt_secret=SECRET,
        jwt_user_claim="email",
        jwt_groups_claim="groups",
        jwt_group_map={"/acme/people-team": "hr", "/acme/staff": "staff"},
    )
    claims = _claims(email="carol@example.com", groups=["/acme/people-team", "/acme/unmapped", "bad name!"])
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    me = client.get("/api/me", headers=_bearer(token)).json()
    assert me == {"name": "carol@example.com", "groups": ["hr"], "admin": False}
    body = {"query": "parental leave", "kbs": [KB]}
    assert client.post("/api/search", json=body, headers=_bearer(token)).json()["hits"][0]["source"].startswith("hr/")

    moved = jwt.encode(_claims(email="carol@example.com", groups=["/acme/staff"]), SECRET, algorithm="HS256")
    assert client.get("/api/me", headers=_bearer(moved)).json()["groups"] == ["staff"]
    hits = client.post("/api/search", json=body, headers=_bearer(moved)).json()["hits"]
    assert all(not h["source"].startswith("hr/") for h in hits), "a group removed at the IdP is removed at once"

    root = jwt.encode(_claims(email="root", groups=[]), SECRET, algorithm="HS256")
    assert client.get("/api/me", headers=_bearer(root)).json()["admin"] is True, "admin stays a cairn-side flag"
    world.cairn.principals.update_user("carol@example.com", disabled=True)
    assert client.get("/api/me", headers=_bearer(moved)).status_code == 401


@pytest.fixture
def jwks_url(rsa_key: rsa.RSAPrivateKey) -> Iterator[str]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    body = json.dumps({"keys": [jwk | {"kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/certs"
    server.shutdown()
    server.server_close()


def test_jwt_keys_from_a_jwks_url(
    make_client: Callable[..., TestClient], rsa_key: rsa.RSAPrivateKey, jwks_url: str
) -> None:
    client = make_client(
        jwt_issuer=ISSUER, jwt_audience=AUDIENCE, jwt_jwks_url=jwks_url, jwt_user_claim="preferred_username"
    )
    token = jwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    assert client.get("/api/me", headers=_bearer(token)).json()["name"] == "alice"
    unknown_kid = jwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": "k2"})
    assert client.get("/api/me", headers=_bearer(unknown_kid)).status_code == 401
    hmac_token = jwt.encode(_claims(), SECRET, algorithm="HS256")
    assert client.get("/api/me", headers=_bearer(hmac_token)).status_code == 401
