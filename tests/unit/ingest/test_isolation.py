"""The parser worker pool: same results as in-process, and a file that overruns or crashes costs one worker, not us."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from cairn.errors import CorruptDocument, LimitExceeded, UnsupportedFormat
from cairn.ingest.isolation import ProcessParser, decode_reply, encode_document
from cairn.ingest.limits import MB, ParseLimits
from cairn.ingest.parse import InProcessParser, create_parser, parse_bytes
from cairn.settings import get_settings
from cairn.testing import hostile
from cairn.types import Heading, PageSpan, ParsedDocument

LIMITS = ParseLimits(timeout_s=20, memory_mb=1024)
# Several seconds of pure-Python heading search on one core: slow for sure, and hostile to nothing.
SLOW = b"# heading\nline\n" * 1_000_000


@pytest.fixture
def pool() -> Iterator[ProcessParser]:
    with ProcessParser(LIMITS, workers=2) as parser:
        yield parser


def test_isolated_results_equal_in_process_ones(pool: ProcessParser) -> None:
    for name, data in hostile.seed_files().items():
        assert pool.parse(data, name) == parse_bytes(data, name, limits=LIMITS), name
    with pytest.raises(UnsupportedFormat, match=r"^x\.txt: an ELF executable"):
        pool.parse(b"\x7fELF" + bytes(32), "x.txt")
    assert pool.started == 1, "one worker serves a sequential caller"


def test_a_file_over_the_time_limit_is_stopped_and_the_next_one_parses() -> None:
    with ProcessParser(ParseLimits(timeout_s=0.3), workers=1) as pool:
        pool.parse(b"warm up", "a.txt")
        (first,) = pool.worker_pids()
        started = time.perf_counter()
        with pytest.raises(LimitExceeded, match=r"^slow\.md: parsing took longer than 0\.3 s; stopped") as raised:
            pool.parse(SLOW, "slow.md")
        assert time.perf_counter() - started < 3, "the deadline, not the parse, ends the wait"
        assert raised.value.hint and "parse_timeout_s" in raised.value.hint
        assert pool.worker_pids() == [], "the overrunning worker is gone"
        with pytest.raises(ProcessLookupError):
            os.kill(first, 0)
        assert pool.parse(b"still here", "b.txt").text == "still here"
        assert pool.started == 2


def test_a_crashing_parser_is_reported_and_replaced() -> None:
    """PDFium aborts the process when an allocation fails: the worker dies, the caller gets an error."""
    bomb = hostile.pdf_file(
        [hostile.deflated_spaces(400 * MB, prefix=hostile.text_content(["bomb"]))], filters=b" /Filter /FlateDecode"
    )
    limits = ParseLimits(memory_mb=384, max_unpacked_mb=1000, timeout_s=30)  # let the bomb past the cheap check
    with ProcessParser(limits, workers=1) as pool:
        crashed = r"^bomb\.pdf: .*(crashed on this file \(SIG|memory)"
        with pytest.raises((CorruptDocument, LimitExceeded), match=crashed):
            pool.parse(bomb, "bomb.pdf")
        assert pool.parse(hostile.seed_files()["seed.pdf"], "ok.pdf").pages


def test_running_out_of_memory_in_python_is_a_limit_and_retires_the_worker() -> None:
    with ProcessParser(ParseLimits(memory_mb=300, timeout_s=30), workers=1) as pool:
        with pytest.raises(LimitExceeded, match="needs more than the 300 MB memory limit"):
            pool.parse("é".encode() * (40 * MB), "big.txt")
        assert pool.worker_pids() == []
        assert pool.parse(b"small", "small.txt").text == "small"


def test_a_cpu_limit_signal_is_reported_as_such() -> None:
    with ProcessParser(ParseLimits(timeout_s=60), workers=1) as pool:
        pool.parse(b"warm up", "a.txt")
        (pid,) = pool.worker_pids()
        timer = threading.Timer(0.3, os.kill, (pid, signal.SIGXCPU))
        timer.start()
        try:
            with pytest.raises(LimitExceeded, match="used more than 60 s of CPU time"):
                pool.parse(SLOW, "long.md")
        finally:
            timer.cancel()


def test_a_worker_that_died_while_idle_is_replaced_without_failing_the_file(pool: ProcessParser) -> None:
    pool.parse(b"first", "a.txt")
    (pid,) = pool.worker_pids()
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.1)
    assert pool.parse(b"second", "b.txt").text == "second"
    assert pool.started == 2


def test_warm_up_starts_one_worker_that_the_first_file_uses(pool: ProcessParser) -> None:
    pool.warm_up()
    pool.warm_up()
    (pid,) = pool.worker_pids()
    assert pool.started == 1
    assert pool.parse(b"first", "a.txt").text == "first"
    assert pool.worker_pids() == [pid] and pool.started == 1


def test_threads_share_the_pool(pool: ProcessParser) -> None:
    results: list[str] = []
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for round_ in range(5):
                results.append(pool.parse(f"thread {index} round {round_}".encode(), f"{index}.txt").text)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 20
    assert pool.started <= 2 and len(pool.worker_pids()) <= 2


def test_close_stops_workers_and_the_pool_restarts_on_use(pool: ProcessParser) -> None:
    pool.parse(b"x", "a.txt")
    (pid,) = pool.worker_pids()
    pool.close()
    assert pool.worker_pids() == []
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert pool.parse(b"again", "b.txt").text == "again"


def test_replies_are_validated_not_trusted() -> None:
    document = ParsedDocument(
        text="body\x00", title="t", mime="text/plain", pages=(PageSpan(1, 0, 5),), headings=(Heading(1, "h", 0),)
    )
    frame = encode_document(document)
    header_size = int.from_bytes(frame[:4], "big")
    import json

    header = json.loads(frame[8 : 8 + header_size])
    body = frame[8 + header_size :]
    assert decode_reply(header, body, "f.txt") == ParsedDocument(
        text="body\ufffd", title="t", mime="text/plain", pages=(PageSpan(1, 0, 5),), headings=(Heading(1, "h", 0),)
    )
    for broken in (
        {**header, "pages": [[1, 0, 99]]},
        {**header, "pages": [["1", 0, 1]]},
        {**header, "headings": [[1, 2, 3]]},
        {**header, "title": None},
        {"ok": False, "code": "internal_error", "message": "not an error a parser may report"},
        {"ok": False, "code": "corrupt_document", "message": 7},
    ):
        with pytest.raises(CorruptDocument, match=r"^f\.txt: the parser worker sent an invalid result"):
            decode_reply(broken, body, "f.txt")
    with pytest.raises(LimitExceeded, match=r"^big$"):
        decode_reply({"ok": False, "code": "limit_exceeded", "message": "big", "hint": None}, b"", "f.txt")


def test_settings_choose_the_parser() -> None:
    isolated = create_parser(get_settings(parse_timeout_s=5, parse_workers=3))
    try:
        assert isinstance(isolated, ProcessParser) and isolated.workers == 3 and isolated.limits.timeout_s == 5
    finally:
        isolated.close()
    assert isinstance(create_parser(get_settings(parse_isolation="off", parse_max_pages=7)), InProcessParser)
