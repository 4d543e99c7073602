"""Hostile uploads: a bomb or a malformed file is one failed entry of the response, never a dead server."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from cairn.assistant import Cairn
from cairn.ingest.limits import ParseLimits
from cairn.server.app import create_app
from cairn.server.routes.documents import upload_source
from cairn.testing import hostile

from .conftest import KB, World, build_world, server_settings

LIMITS = ParseLimits(max_unpacked_mb=8)  # the server's own limit, so small bombs prove the point


@pytest.fixture
def small_world(make_cairn: Callable[..., Cairn]) -> World:
    return build_world(make_cairn(generator="extractive:", parse_max_unpacked_mb=LIMITS.max_unpacked_mb))


@pytest.fixture
def small_client(small_world: World) -> Iterator[TestClient]:
    app = create_app(small_world.cairn, server=server_settings())
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_bombs_are_refused_per_file_and_the_server_keeps_serving(small_client: TestClient, small_world: World) -> None:
    client, world = small_client, small_world
    assert world.cairn.settings.parse_isolation == "process"
    bad = {b.name: b for b in hostile.known_bad_files(LIMITS)}
    files = [
        ("files", ("bomb.pdf", bad["flate-bomb-nested.pdf"].data, "application/pdf")),
        ("files", ("lying.docx", bad["zip-bomb-lying.docx"].data, "application/octet-stream")),
        ("files", ("broken.pdf", bad["not-a-pdf.pdf"].data, "application/pdf")),
        ("files", ("fine.txt", b"The canteen opens at eight and closes at three.", "text/plain")),
    ]
    response = client.post(f"/api/kbs/{KB}/documents", files=files, headers=world.auth("root"))
    assert response.status_code == 200, response.text
    report = {d["source"]: d for d in response.json()["documents"]}
    assert report["fine.txt"]["status"] == "added"
    assert report["bomb.pdf"]["status"] == "error" and "decompression bomb" in report["bomb.pdf"]["message"]
    assert report["lying.docx"]["status"] == "error" and "zip bomb" in report["lying.docx"]["message"]
    assert report["broken.pdf"]["status"] == "error" and report["broken.pdf"]["message"].startswith("broken.pdf: ")
    assert response.json()["failed"] == 3

    only_bad = [("files", ("bomb.pdf", bad["flate-bomb-nested.pdf"].data, "application/pdf"))]
    refused = client.post(f"/api/kbs/{KB}/documents", files=only_bad, headers=world.auth("root"))
    assert refused.status_code == 413 and refused.json()["error"]["code"] == "limit_exceeded"
    assert client.get("/api/me", headers=world.auth("alice")).status_code == 200


@pytest.mark.parametrize("name", ["a\x00b.txt", "line\nbreak.txt", "tab\there.txt", "x" * 1100 + ".txt"])
def test_unstorable_upload_names_are_refused(name: str) -> None:
    from cairn.errors import InputError

    with pytest.raises(InputError):
        upload_source(name)
