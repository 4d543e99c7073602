"""docs/server.md is the server's manual: every setting and every endpoint must be in it."""

from __future__ import annotations

import re
from pathlib import Path

from cairn.server.app import create_app
from cairn.server.config import ServerSettings

DOC = (Path(__file__).resolve().parents[3] / "docs" / "server.md").read_text(encoding="utf-8")


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def test_every_server_setting_is_documented() -> None:
    missing = [name for name in ServerSettings.model_fields if f"`CAIRN_SERVER_{name.upper()}`" not in DOC]
    assert not missing, f"undocumented server settings: {missing}"


def test_every_endpoint_is_documented() -> None:
    schema = create_app(server=ServerSettings()).openapi()
    documented = _shape(DOC)
    missing = [
        f"{method.upper()} {path}"
        for path, item in schema["paths"].items()
        for method in item
        if f"{method.upper()} {_shape(path)}" not in documented
    ]
    assert not missing, f"endpoints missing from docs/server.md: {missing}"
