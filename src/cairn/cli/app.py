"""The ``cairn`` command. Thin: parse arguments, call :class:`cairn.assistant.Cairn`, print.

Errors are mapped in one place (:func:`main`): a :class:`CairnError` prints its message and hint
(or a JSON error object with ``--json``) and exits 1; nothing prints a traceback to a user.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import typer

from cairn.errors import CairnError

app = typer.Typer(
    name="cairn",
    help="Answers from your organisation's documents, with citations, and never from thin air.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
kb_app = typer.Typer(help="Knowledge bases.", no_args_is_help=True)
eval_app = typer.Typer(help="Measure retrieval and answer quality.", no_args_is_help=True)
app.add_typer(kb_app, name="kb")
app.add_typer(eval_app, name="eval")

_json_errors = False


def want_json_errors(enabled: bool) -> None:
    global _json_errors
    _json_errors = enabled


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


# The modules whose import registers their commands on ``app`` (the docs test walks the same list).
COMMAND_MODULES = (
    "commands",
    "access_cmd",
    "audit_cmd",
    "eval_cmd",
    "qa_cmd",
    "index_cmd",
    "serve_cmd",
    "tiers_cmd",
    "jobs_cmd",
    "drift_cmd",
    "experiments_cmd",
)


def register_commands() -> None:
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(f"cairn.cli.{name}")


def main() -> None:
    register_commands()
    want_json_errors(False)  # a command with --json turns it on for its own run only

    stderr = logging.StreamHandler()
    stderr.setLevel(logging.WARNING)  # the full log goes to CAIRN_HOME/logs/cairn.log
    stderr.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[stderr])
    from cairn.ops.telemetry import configure_tracing

    configure_tracing()  # exports traces only when OTEL_EXPORTER_OTLP_ENDPOINT is set and the SDK installed
    try:
        app()
    except CairnError as exc:
        if _json_errors:
            print_json(exc.to_dict())
        else:
            sys.stderr.write(f"Error: {exc.message}\n")
            if exc.hint:
                sys.stderr.write(f"Hint: {exc.hint}\n")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        raise SystemExit(130) from None
    finally:
        from cairn.cli.context import close_all

        close_all()
