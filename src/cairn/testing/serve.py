"""A real ``cairn serve`` process on a free loopback port, for tests that need sockets and processes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from cairn.testing.postgres import free_port


@contextmanager
def serve_process(env: Mapping[str, str], log_path: Path, *, ready_within_s: float = 120) -> Iterator[str]:
    """Start ``cairn serve`` with ``env``, yield its base URL once ``/readyz`` answers, stop it afterwards.

    The server's output goes to ``log_path`` and is quoted when it exits or never becomes ready.
    """
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cairn", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log_path, ready_within_s)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"cairn serve exited:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not become ready:\n{log_path.read_text(errors='replace')}")
