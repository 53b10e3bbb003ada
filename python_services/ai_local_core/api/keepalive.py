"""Keep a slow answer alive through edges that cut silent requests.

Cloudflare answers 524 when the origin sends no byte for 100 s; a cold model load
plus a long answer takes longer than that. The API therefore runs the work of a
``POST /v1/*`` request in a thread of its own (:func:`start`) and waits for it a
short grace (``api.keepalive_after``). Work done within the grace is answered as
usual (its own status, error or not). Otherwise the answer is committed: status
200, a whitespace byte at once and one every ``api.keepalive_interval`` seconds
(:func:`body`; JSON parsers skip leading whitespace), then the JSON object, which
carries the error, if any, as ``{"success": false, "error": {...}}``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import TypeVar

__all__ = ["KEEPALIVE_BYTE", "body", "finished_within", "start"]

#: What keeps the connection busy: insignificant whitespace before the JSON value (RFC 8259).
KEEPALIVE_BYTE = b" "

_T = TypeVar("_T")


def start(work: Callable[[], _T], *, name: str = "ai-local-core-work") -> futures.Future[_T]:
    """Run ``work`` in a daemon thread; its result or exception lands in the future."""
    future: futures.Future[_T] = futures.Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = work()
        except BaseException as exc:  # noqa: BLE001 - handed to whoever reads the future
            future.set_exception(exc)
        else:
            future.set_result(result)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def finished_within(future: futures.Future[_T], seconds: float) -> bool:
    """Wait up to ``seconds`` for the future; whether it is done."""
    futures.wait([future], timeout=seconds)
    return future.done()


def body(
    future: futures.Future[_T],
    interval: float,
    final: Callable[[futures.Future[_T]], bytes],
    aborted: Callable[[], None],
) -> Iterator[bytes]:
    """A committed answer's body: whitespace now and every ``interval`` s, then ``final``.

    ``final`` turns the finished future into the JSON bytes; ``aborted`` runs instead
    when the client went away first (the work itself runs on to its end).
    """
    finished = False
    try:
        yield KEEPALIVE_BYTE
        while not finished_within(future, interval):
            yield KEEPALIVE_BYTE
        data = final(future)
        finished = True
        yield data
    finally:
        if not finished:
            aborted()
