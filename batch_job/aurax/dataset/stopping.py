"""Stopping `aurax job prepare` on request (SIGTERM from ECS, a spot interruption notice) within seconds.

The job asks a `StopCheck` between download chunks, between retries of a download and between encoded
batches, and raises `Interrupted` there; the builder then writes what it finished (the shards and the progress
record) so that the next attempt resumes, and the command exits 75 (`JobExit.INTERRUPTED`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

StopCheck = Callable[[], bool]
#: Longest sleep between two looks at the stop check.
POLL_SECONDS = 0.5


class Interrupted(Exception):
    """The job was asked to stop; the message says where it stopped."""


def never() -> bool:
    return False


def check(stop: StopCheck, where: str) -> None:
    """Raise `Interrupted` when a stop was requested."""
    if stop():
        raise Interrupted(f"stop requested {where}")


def sleep(seconds: float, stop: StopCheck, sleep_fn: Callable[[float], None] = time.sleep) -> None:
    """Sleep `seconds` (one `sleep_fn` call when nothing can ask to stop), looking at `stop` twice a second."""
    if stop is never:
        sleep_fn(seconds)
        return
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        check(stop, "while waiting to retry a download")
        sleep_fn(min(POLL_SECONDS, left))
