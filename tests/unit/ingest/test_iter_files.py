"""Listing and reading an ingest folder: links never lead out of it, and nothing but regular files is read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cairn.errors import InputError
from cairn.ingest.sync import iter_files, printable, read_file


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "a.txt").write_text("a")
    (root / "sub" / "b.txt").write_text("b")
    (outside / "secret.txt").write_text("secret")
    return root, outside


def test_links_out_of_the_root_are_reported_and_not_followed(tree: tuple[Path, Path]) -> None:
    root, outside = tree
    (root / "secret-link.txt").symlink_to(outside / "secret.txt")
    (root / "outside-dir").symlink_to(outside, target_is_directory=True)
    (root / "up").symlink_to("..", target_is_directory=True)
    (root / "inside-link.txt").symlink_to(root / "sub" / "b.txt")
    (root / "loop1").symlink_to(root / "loop2")
    (root / "loop2").symlink_to(root / "loop1")
    (root / "dangling.txt").symlink_to(root / "missing.txt")
    refused: list[tuple[Path, str]] = []
    files = [p.relative_to(root).as_posix() for p in iter_files(root, refused=refused)]
    assert files == ["a.txt", "inside-link.txt", "sub/b.txt"]
    assert {(p.name, reason) for p, reason in refused} == {
        ("secret-link.txt", "symbolic link to outside the ingest root; not followed"),
        ("outside-dir", "symbolic link to outside the ingest root; not followed"),
        ("up", "symbolic link to outside the ingest root; not followed"),
        ("loop1", "symbolic link loop; not followed"),
        ("loop2", "symbolic link loop; not followed"),
    }


def test_special_files_are_not_listed_or_read(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    fifo = root / "pipe.txt"
    os.mkfifo(fifo)
    assert fifo not in list(iter_files(root))
    with pytest.raises(InputError, match=r"^pipe\.txt: not a regular file"):
        read_file(fifo, 1000, root)  # opened non-blocking: no writer needed to get an answer


def test_read_checks_the_file_again_when_it_opens_it(tree: tuple[Path, Path]) -> None:
    root, outside = tree
    listed = list(iter_files(root))
    target = root / "a.txt"
    assert target in listed
    target.unlink()
    target.symlink_to(outside / "secret.txt")  # swapped after listing
    with pytest.raises(InputError, match=r"^a\.txt: leads outside the ingest root"):
        read_file(target, 1000, root)
    assert read_file(target, 1000) == b"secret", "a file named on its own is read where it leads"


def test_read_is_bounded(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    big = root / "big.txt"
    big.write_bytes(b"x" * 2_000_001)
    with pytest.raises(InputError, match=r"^big\.txt: 2\.0 MB exceeds the 2 MB limit"):
        read_file(big, 2_000_000, root)
    assert len(read_file(big, 2_000_001, root)) == 2_000_001


def test_printable_shows_bytes_that_are_not_utf8() -> None:
    name = os.fsdecode(b"caf\xe9.txt")
    assert printable(name) == "caf\\xe9.txt"
    assert printable("café.txt") == "café.txt"
