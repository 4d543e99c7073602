"""Documentation is part of the product: every setting and every command must be documented."""

from __future__ import annotations

from pathlib import Path

import typer.main

import cairn
from cairn.cli.app import app, register_commands
from cairn.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [name for name in Settings.model_fields if f"`CAIRN_{name.upper()}`" not in doc]
    assert not missing, f"undocumented settings: {missing}"


def _command_paths() -> list[str]:
    register_commands()
    group = typer.main.get_command(app)
    paths: list[str] = []

    def walk(cmd: object, prefix: str) -> None:
        subcommands = getattr(cmd, "commands", None)
        if subcommands is None:
            paths.append(prefix)
            return
        for name, sub in subcommands.items():
            walk(sub, f"{prefix} {name}".strip())

    walk(group, "")
    return paths


def test_every_command_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    paths = _command_paths()
    assert {"ingest", "ask", "search", "chat", "eval beir", "kb list"} <= set(paths)
    missing = [p for p in paths if f"cairn {p}" not in readme]
    assert not missing, f"commands missing from README.md: {missing}"


def test_public_api() -> None:
    assert sorted(cairn.__all__) == ["CairnError", "Settings", "__version__", "get_settings"]
    for name in cairn.__all__:
        assert getattr(cairn, name) is not None


def test_import_is_cheap() -> None:
    """Importing cairn must not pull in settings machinery, models or database drivers."""
    import subprocess
    import sys

    code = (
        "import sys, cairn; heavy = [m for m in ('pydantic_settings', 'numpy', 'onnxruntime', 'llama_cpp',"
        " 'psycopg', 'torch') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
