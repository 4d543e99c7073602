"""What keeps one caller, or one burst, from taking the service down: body size, rate, concurrency, time.

The rate limiter and the generation slots live in this process. With several workers or replicas
each has its own bucket and its own slots, so the effective limits are per process times the
number of processes; a shared limiter (in PostgreSQL or a proxy) is the remedy when that matters.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cairn.server.errors import Overloaded, PayloadTooLarge, RateLimited, TimedOut, error_headers, public

T = TypeVar("T")


class RateLimiter:
    """A token bucket per principal: ``burst`` requests at once, refilled at ``per_minute``.

    Buckets are forgotten once full again, so memory stays proportional to recent callers.
    """

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> None:
        """Spend one token of ``key``'s bucket or raise :class:`RateLimited` with the wait needed."""
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                error = RateLimited(
                    "too many requests",
                    hint=f"the limit is {self.rate * 60:g} per minute with bursts of {self.burst:g}",
                )
                error.retry_after = (1.0 - tokens) / self.rate
                raise error
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > 10_000:
                self._forget_full(now)

    def _forget_full(self, now: float) -> None:
        refill = self.burst / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < refill}


class Deadline:
    """One time budget shared by the steps of a request (queueing, retrieval, each streamed token)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ends = time.monotonic() + seconds

    def left(self) -> float:
        return self.ends - time.monotonic()

    def expired(self) -> TimedOut:
        return TimedOut(f"the request took longer than {self.seconds:g} s", hint="ask a narrower question or retry")


async def run_blocking(deadline: Deadline, fn: Callable[[], T]) -> T:
    """Run sync library code in the thread pool within the deadline.

    On timeout the caller is answered at once; the thread is abandoned and finishes on its own,
    because a Python thread cannot be stopped from outside.
    """
    left = deadline.left()
    if left <= 0:
        raise deadline.expired()
    try:
        with anyio.fail_after(left):
            return await anyio.to_thread.run_sync(fn, abandon_on_cancel=True)
    except TimeoutError:
        raise deadline.expired() from None


_DONE = object()


class Generations:
    """At most ``slots`` answers generate at once; up to ``queue`` more wait, the rest get 503 at once.

    Generation is what costs (seconds of a CPU or GPU per answer): refusing early is kinder than
    letting every request time out together. The work runs on this pool's own threads, and a
    slot is given back only when its thread is really done, also after a timeout or a client that
    went away, so the limit holds for the work and not just for the requests.
    """

    def __init__(self, slots: int, queue: int) -> None:
        self.slots = slots
        self.queue = queue
        self.running = 0
        self.waiting = 0
        self._semaphore = asyncio.Semaphore(slots)
        self._executor = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="cairn-generate")

    async def run(self, deadline: Deadline, fn: Callable[[], T]) -> T:
        lease = await self._lease(deadline)
        try:
            return await lease.call(deadline, fn)
        finally:
            lease.end()

    async def stream(self, deadline: Deadline, events: Iterator[T]) -> AsyncGenerator[T, None]:
        """Pull ``events`` (a sync generator) one item at a time, holding a slot until it is exhausted or closed."""
        lease = await self._lease(deadline)

        def pull() -> object:
            return next(events, _DONE)

        try:
            while True:
                item = await lease.call(deadline, pull)
                if item is _DONE:
                    return
                yield item  # type: ignore[misc]
        finally:
            close = getattr(events, "close", None)
            lease.end(close if callable(close) else None)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _lease(self, deadline: Deadline) -> _Lease:
        if self._semaphore.locked() and self.waiting >= self.queue:
            error = Overloaded(
                "the server is busy answering other questions",
                hint=f"{self.slots} answers are being generated and {self.waiting} are waiting; retry shortly",
            )
            error.retry_after = 2
            raise error
        self.waiting += 1
        try:
            await asyncio.wait_for(self._semaphore.acquire(), max(deadline.left(), 0.0))
        except TimeoutError:
            raise deadline.expired() from None
        finally:
            self.waiting -= 1
        self.running += 1
        return _Lease(self, asyncio.get_running_loop())

    def _release(self) -> None:
        self.running -= 1
        self._semaphore.release()


class _Lease:
    """One held slot; ``end`` gives it back now, or when the work still on its thread finishes."""

    def __init__(self, pool: Generations, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop
        self.pending: asyncio.Future[Any] | None = None

    async def call(self, deadline: Deadline, fn: Callable[[], T]) -> T:
        future: asyncio.Future[T] = self.loop.run_in_executor(self.pool._executor, fn)
        self.pending = future
        try:
            result = await asyncio.wait_for(asyncio.shield(future), max(deadline.left(), 0.0))
        except TimeoutError:
            raise deadline.expired() from None
        self.pending = None
        return result

    def end(self, cleanup: Callable[[], object] | None = None) -> None:
        def release(finished: object = None) -> None:
            if isinstance(finished, asyncio.Future) and not finished.cancelled():
                finished.exception()  # nobody awaits it any more: its failure is not an unretrieved error
            self.pool._release()

        def finish(abandoned: object = None) -> None:
            if isinstance(abandoned, asyncio.Future) and not abandoned.cancelled():
                abandoned.exception()
            if cleanup is None:
                release()
                return
            self.loop.run_in_executor(self.pool._executor, cleanup).add_done_callback(release)

        if self.pending is not None and not self.pending.done():
            self.pending.add_done_callback(finish)
        else:
            finish()


class BodyLimit:
    """413 for bodies beyond the limit: at once from ``Content-Length``, or as soon as a chunked body passes it.

    ``is_upload(scope)`` selects the requests that get the larger upload limit. When a body turns
    out too large while the application reads it, the application's own response (whatever its
    parser made of the failure) is replaced by the 413.
    """

    def __init__(self, app: ASGIApp, *, limit: int, upload_limit: int, is_upload: Callable[[Scope], bool]) -> None:
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit
        self.is_upload = is_upload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_limit if self.is_upload(scope) else self.limit
        too_large = PayloadTooLarge(
            f"the request body is larger than {_size(limit)}",
            hint="upload fewer or smaller files" if limit == self.upload_limit else "send a shorter request",
        )
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_error(send, too_large)
            return
        received = 0
        exceeded = False
        replaced = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise too_large
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal replaced
            if exceeded:
                if not replaced and message["type"] == "http.response.start":
                    replaced = True
                    await _send_error(send, too_large)
                return
            await send(message)

        await self.app(scope, counting_receive, guarded_send)


def _size(limit: int) -> str:
    if limit >= 1024 * 1024:
        return f"{limit / (1024 * 1024):g} MB"
    return f"{math.ceil(limit / 1024)} KB"


async def _send_error(send: Send, error: PayloadTooLarge) -> None:
    body = json.dumps(public(error).to_dict()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error_headers(error).items()]
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
