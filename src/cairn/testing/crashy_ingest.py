"""An ingest meant to be killed: ``python -m cairn.testing.crashy_ingest DIR KB``.

The crash-safety test sends this process SIGKILL at a random moment and then checks the index.
Two things make those moments worth testing: writes go in tiny batches (``CAIRN_CRASHY_BATCH``
chunks, default 4), so a run is many transactions and a kill lands between or inside them rather
than around one big commit; and ``started`` is printed once the database, the embedder and a parse
worker are ready, so the test can time its kill from there instead of wasting most trials on
start-up.
Settings come from the environment (``CAIRN_DATABASE_URL``, ``CAIRN_EMBEDDER``, ``CAIRN_HOME``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python -m cairn.testing.crashy_ingest DIR KB\n")
        return 2
    from cairn.assistant import Cairn
    from cairn.settings import get_settings

    folder, kb = Path(argv[0]), argv[1]
    cairn = Cairn(get_settings())
    ingestor = cairn.ingestor
    ingestor.batch_chunks = int(os.environ.get("CAIRN_CRASHY_BATCH", "4"))
    cairn.db.warm_up()
    cairn.store.ensure_kb(kb)
    cairn.embedder.warm_up()
    cairn.parser.warm_up()  # a parse worker starting after "started" would take up the kill window
    sys.stdout.write("started\n")
    sys.stdout.flush()
    report = ingestor.sync_folder(folder, kb)
    sys.stdout.write(json.dumps(report.to_json()) + "\n")
    cairn.close()
    return 0 if report.ok else 3


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
