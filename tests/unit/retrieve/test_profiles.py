"""Profiles and pipeline configs: named stages, files of fields, 'off' switches."""

from __future__ import annotations

from pathlib import Path

import pytest

from cairn.cli.context import _read_config_file
from cairn.errors import InputError
from cairn.retrieve.hybrid import RetrievalConfig
from cairn.retrieve.profiles import PROFILES, STAGES_OFF, profile_changes
from cairn.settings import get_settings


def test_every_profile_builds_and_switches_stages_it_does_not_name_off(tmp_path: Path) -> None:
    settings = get_settings(home=tmp_path)
    for name in PROFILES:
        config = RetrievalConfig.from_settings(settings, name)
        assert config.profile == name
        for field, off in STAGES_OFF.items():
            if field not in PROFILES[name]:
                assert getattr(config, field) == off
    with pytest.raises(InputError, match="unknown retrieval profile"):
        profile_changes("turbo")


def test_off_values_turn_a_stage_off() -> None:
    config = RetrievalConfig(rerank="maxsim:", rewrite="rm3:")
    assert config.with_(rerank="off", rewrite="").rerank is None
    assert config.with_(rewrite="none").rewrite is None
    with pytest.raises(InputError):
        RetrievalConfig(rerank_depth=0)
    with pytest.raises(InputError):
        RetrievalConfig(graph=1.5)


def test_config_files(tmp_path: Path) -> None:
    toml = tmp_path / "p.toml"
    toml.write_text('[retrieval]\nrerank = "maxsim:"\nrerank_depth = 20\n', encoding="utf-8")
    assert _read_config_file(toml) == {"rerank": "maxsim:", "rerank_depth": 20}
    js = tmp_path / "p.json"
    js.write_text('{"rewrite": "rm3:", "top_k": 8}', encoding="utf-8")
    assert RetrievalConfig().with_(**_read_config_file(js)).top_k == 8
    bad = tmp_path / "bad.json"
    bad.write_text('{"rerankk": "maxsim:"}', encoding="utf-8")
    with pytest.raises(InputError, match="rerankk"):
        _read_config_file(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("rerank = ", encoding="utf-8")
    with pytest.raises(InputError, match="cannot read"):
        _read_config_file(broken)
