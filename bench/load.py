"""Loopback load test of ``cairn serve`` on the embedded defaults (embedded PostgreSQL, packaged ONNX
embedder) with the extractive answerer: N concurrent users for a fixed time, each with its own key.

    python bench/load.py                          # 20 users, 60 s, 70 % search / 30 % ask
    python bench/load.py --users 50 --duration 120 --ask 0.5 --home /tmp/cairn-load

It ingests samples/handbook into a fresh (or given) CAIRN_HOME with the CLI, makes one user and
API key per simulated user, starts ``cairn serve`` as a subprocess and drives it with httpx over
asyncio (closed loop, no think time: each user sends its next request when the last one ends).
Prints p50/p95/p99 latency and the error rate per endpoint, and the JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [
    q.strip() for q in (ROOT / "samples" / "questions.txt").read_text(encoding="utf-8").splitlines() if q.strip()
]
SEARCHES = [
    "VPN gateway",
    "parental leave",
    "on-call rotation",
    "report phishing",
    "expense approval",
    "analytics dashboard launch",
    "password rotation",
    "first week onboarding",
]


@dataclass
class Samples:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    def add(self, seconds: float, status: int) -> None:
        self.latencies.append(seconds)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def summary(self) -> dict[str, object]:
        ordered = sorted(self.latencies)
        errors = sum(n for s, n in self.statuses.items() if s >= 400 or s == 0)

        def pct(p: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 1) if ordered else 0.0

        return {
            "requests": len(ordered),
            "errors": errors,
            "error_rate": round(errors / len(ordered), 4) if ordered else 0.0,
            "p50_ms": pct(0.50),
            "p95_ms": pct(0.95),
            "p99_ms": pct(0.99),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 1) if ordered else 0.0,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
        }


def cli(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "cairn", *args], env=env, capture_output=True, text=True, check=False)
    if proc.returncode not in (0, 3):
        raise SystemExit(f"cairn {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def user(
    client: httpx.AsyncClient, key: str, until: float, ask_share: float, results: dict[str, Samples]
) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    rng = random.Random(key)
    while time.monotonic() < until:
        if rng.random() < ask_share:
            name, path, body = "ask", "/api/ask", {"question": rng.choice(QUESTIONS), "kbs": ["handbook"]}
        else:
            name, path, body = "search", "/api/search", {"query": rng.choice(SEARCHES), "kbs": ["handbook"], "k": 5}
        started = time.perf_counter()
        try:
            response = await client.post(path, json=body, headers=headers)
            status = response.status_code
        except httpx.HTTPError:
            status = 0
        results[name].add(time.perf_counter() - started, status)


async def drive(url: str, keys: list[str], duration: float, ask_share: float) -> dict[str, Samples]:
    results = {"search": Samples(), "ask": Samples()}
    limits = httpx.Limits(max_connections=len(keys), max_keepalive_connections=len(keys))
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        warm = {"Authorization": f"Bearer {keys[0]}"}
        await client.post("/api/search", json={"query": "warm up", "kbs": ["handbook"]}, headers=warm)
        until = time.monotonic() + duration
        await asyncio.gather(*(user(client, key, until, ask_share, results) for key in keys))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--ask", type=float, default=0.3, help="Share of requests that are /api/ask.")
    parser.add_argument("--home", type=Path, help="CAIRN_HOME to use (default: a fresh temporary one).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    home = args.home or Path(tempfile.mkdtemp(prefix="cairn-load-"))
    env = {**os.environ, "CAIRN_HOME": str(home), "CAIRN_GENERATOR": "extractive:"}
    env.pop("CAIRN_DATABASE_URL", None)
    # One bucket per simulated user; a closed loop with no think time would exceed the default rate.
    env["CAIRN_SERVER_RATE_PER_MINUTE"] = "100000"
    env["CAIRN_SERVER_BURST"] = "1000"
    cli(env, "ingest", str(ROOT / "samples" / "handbook"), "--kb", "handbook", "--groups", "everyone", "--json")
    known = {u["name"] for u in json.loads(cli(env, "users", "list", "--json"))["users"]}
    keys = []
    for i in range(args.users):
        name = f"load{i:03d}"
        if name not in known:
            cli(env, "users", "add", name, "--json")
        keys.append(json.loads(cli(env, "keys", "create", "--user", name, "--name", "bench", "--json"))["key"])

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "cairn", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("cairn serve did not become ready")
            time.sleep(0.2)
        started = time.monotonic()
        results = asyncio.run(drive(url, keys, args.duration, args.ask))
        elapsed = time.monotonic() - started
    finally:
        server.terminate()
        server.wait(30)

    report = {
        "users": args.users,
        "duration_s": round(elapsed, 1),
        "cpus": os.cpu_count(),
        "throughput_rps": round(sum(len(s.latencies) for s in results.values()) / elapsed, 1),
        **{name: samples.summary() for name, samples in results.items()},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.users} users for {report['duration_s']} s on {report['cpus']} CPUs: {report['throughput_rps']} req/s")
    print(f"{'endpoint':<10}{'requests':>10}{'errors':>8}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}")
    for name in ("search", "ask"):
        s = report[name]
        assert isinstance(s, dict)
        print(f"{name:<10}{s['requests']:>10}{s['errors']:>8}{s['p50_ms']:>10}{s['p95_ms']:>10}{s['p99_ms']:>10}")


if __name__ == "__main__":
    main()
