"""Who may read an ingested file: sidecar ``.cairn-acl`` files next to the documents, or ingest flags.

A folder's ``.cairn-acl`` applies to every file below it until a deeper one replaces it; a
``NAME.cairn-acl`` beside a file applies to that file alone. The nearest one wins whole (lists are
not merged, so a sub-folder can be narrower than its parent). Files with no sidecar get the
readers given on the command line; with none at all a document is readable by admins only.

The format is deliberately tiny, one list per line::

    # HR policies: the HR team and the two auditors
    groups: hr, audit
    users: alice, bob
"""

from __future__ import annotations

from pathlib import Path

from cairn.errors import InputError
from cairn.index.access import readers, split_names

FOLDER_SIDECAR = ".cairn-acl"
FILE_SUFFIX = ".cairn-acl"
_MAX_BYTES = 64 * 1024


def is_sidecar(path: Path) -> bool:
    return path.name.endswith(FILE_SUFFIX)


def parse_sidecar(text: str, origin: str) -> tuple[str, ...]:
    """The reader tokens of a sidecar file; a line it does not understand is an error, never ignored."""
    lists: dict[str, list[str]] = {"groups": [], "users": []}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, values = line.partition(":")
        key = key.strip().lower()
        if not sep or key not in lists:
            raise InputError(
                f"{origin}:{number}: expected 'groups: a, b' or 'users: x, y', got {raw.strip()[:80]!r}",
                hint="an access list that cannot be read is not applied; the file keeps its previous readers",
            )
        lists[key] += split_names([values])
    try:
        return readers(lists["groups"], lists["users"])
    except InputError as exc:
        raise InputError(f"{origin}: {exc.message}") from None


class AclResolver:
    """Resolves the readers of each file under ``root``, reading every sidecar once."""

    def __init__(self, root: Path, default: tuple[str, ...] = ()) -> None:
        self.root = root.resolve()
        self.default = default
        self._folders: dict[Path, tuple[str, ...] | None] = {}

    def readers_for(self, path: Path) -> tuple[str, ...]:
        """Raises :class:`InputError` when the sidecar that governs ``path`` is malformed."""
        path = path.resolve()
        own = _read(path.with_name(path.name + FILE_SUFFIX))
        if own is not None:
            return own
        folder = path.parent
        while True:
            found = self._folder(folder)
            if found is not None:
                return found
            if folder == self.root or self.root not in folder.parents:
                return self.default
            folder = folder.parent

    def _folder(self, folder: Path) -> tuple[str, ...] | None:
        if folder not in self._folders:
            self._folders[folder] = _read(folder / FOLDER_SIDECAR)
        return self._folders[folder]


def _read(path: Path) -> tuple[str, ...] | None:
    try:
        if not path.is_file():
            return None
        if path.stat().st_size > _MAX_BYTES:
            raise InputError(f"{path}: an access list larger than 64 KB is not plausible")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the access list ({exc})") from None
    return parse_sidecar(text, str(path))
