"""What parsing in worker processes costs, against parsing in-process, on the same files.

    python bench/parse_isolation.py                 # the sample corpus (scripts/build_samples.py)
    python bench/parse_isolation.py ./docs --rounds 5

For each file: the median in-process parse time and the median through a warm worker pool (one
worker, the same limits), so the difference is the isolation overhead per file (sending the bytes,
receiving the JSON result); then the time to start a worker, which a file pays only when it killed
the previous one, and the whole folder, cold (first worker start included) and warm.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cairn.ingest.isolation import ProcessParser
from cairn.ingest.limits import ParseLimits
from cairn.ingest.parse import parse_bytes
from cairn.ingest.sync import iter_files

ROOT = Path(__file__).resolve().parents[1]


def _median_ms(run: object, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _one_file_on_a_fresh_pool(limits: ParseLimits) -> None:
    with ProcessParser(limits, workers=1) as pool:
        pool.parse(b"x", "x.txt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, help="files to parse (default: the sample corpus)")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.folder
        if folder is None:
            folder = Path(scratch) / "samples"
            build = [sys.executable, str(ROOT / "scripts" / "build_samples.py"), str(folder)]
            subprocess.run(build, check=True, stdout=subprocess.DEVNULL)
        files = [(path.name, path.read_bytes()) for path in iter_files(folder)]
    limits = ParseLimits()
    print(f"{len(files)} files, {sum(len(d) for _, d in files) / 1024:.0f} KB, median of {args.rounds} rounds\n")
    print(f"{'file':<32} {'KB':>7} {'in-process ms':>14} {'isolated ms':>12} {'overhead ms':>12}")
    total_in = total_iso = 0.0
    with ProcessParser(limits, workers=1) as pool:
        started = time.perf_counter()
        for name, data in files:
            pool.parse(data, name)
        cold_ms = (time.perf_counter() - started) * 1000
        for name, data in files:
            inproc = _median_ms(lambda d=data, n=name: parse_bytes(d, n, limits=limits), args.rounds)
            isolated = _median_ms(lambda d=data, n=name: pool.parse(d, n), args.rounds)
            total_in += inproc
            total_iso += isolated
            print(f"{name:<32} {len(data) / 1024:>7.1f} {inproc:>14.2f} {isolated:>12.2f} {isolated - inproc:>12.2f}")
        pool.close()
        start_ms = _median_ms(lambda: _one_file_on_a_fresh_pool(limits), 3)
    print(f"\n{'all files, warm':<40} {total_in:>14.2f} {total_iso:>12.2f} {total_iso - total_in:>12.2f}")
    print(f"all files, cold pool (first worker start included): {cold_ms:.0f} ms")
    print(f"starting a worker (after a kill, or the first file): {start_ms:.0f} ms")


if __name__ == "__main__":
    main()
