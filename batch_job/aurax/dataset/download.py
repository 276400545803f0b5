"""Resumable HTTP downloads: byte ranges, size checks, retries with exponential backoff.

Bytes go to `<dest>.part` and are renamed to `dest` only once complete and the right size, so a file named
`dest` is always whole; an interrupted download resumes from the `.part` file's size (here or on a re-run).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import requests

from . import stopping
from .stopping import StopCheck

log = logging.getLogger(__name__)

_CONTENT_RANGE = re.compile(r"^bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)$")


class DownloadError(Exception):
    """A download failed. `transient` is True when trying again later may succeed (network, 5xx): the
    partial file is kept so the next attempt resumes."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    """Tries per file; each resumes where the previous one stopped."""
    base_delay_s: float = 2.0
    max_delay_s: float = 120.0
    connect_timeout_s: float = 15.0
    read_timeout_s: float = 120.0
    chunk_bytes: int = 1 << 14
    """Bytes per write; a dropped connection loses at most the chunk in flight, and a stop request is seen
    after at most one chunk (16 KiB: milliseconds at the site's usual MB/s)."""
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def delay(self, attempt: int) -> float:
        return min(self.max_delay_s, self.base_delay_s * 2 ** attempt)


#: What the job uses (tests replace it to retry without waiting).
DEFAULT_RETRY = RetryPolicy()


def download(url: str, dest: Path, expected_size: int | None = None, policy: RetryPolicy = DEFAULT_RETRY,
             session: requests.Session | None = None, stop: StopCheck = stopping.never) -> Path:
    """Download `url` to `dest` (skipped when `dest` is already complete) and return `dest`.

    `expected_size`, when known, must equal the server's size: a mismatch means the remote file is not the
    one we expect, which no retry fixes. `stop` is asked after every chunk and during retry waits; when it
    says stop, `stopping.Interrupted` is raised and the partial file is kept for the next attempt.
    """
    if dest.is_file() and (expected_size is None or dest.stat().st_size == expected_size):
        log.info("%s already downloaded (%d bytes)", dest.name, dest.stat().st_size)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    # A session made here is closed here (its pooled connection with it); a caller's stays open.
    with (nullcontext(session) if session else requests.Session()) as http:
        last_problem = "no attempt made"
        for attempt in range(policy.attempts):
            if attempt:
                wait = policy.delay(attempt - 1)
                log.warning("%s: %s; retrying in %.0f s (attempt %d of %d)", url, last_problem, wait,
                            attempt + 1, policy.attempts)
                stopping.sleep(wait, stop, policy.sleep)
            try:
                total = _fetch_once(http, url, partial, policy, stop)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                last_problem = f"connection lost at byte {_size(partial)} ({type(exc).__name__})"
                continue
            except _ServerError as exc:
                last_problem = str(exc)
                continue
            got = _size(partial)
            if got < total:
                last_problem = f"connection closed early at byte {got} of {total}"
                continue
            if got > total:
                partial.unlink()
                last_problem = f"received {got} bytes but the server says the file has {total}; restarting"
                continue
            if expected_size is not None and total != expected_size:
                partial.unlink()
                raise DownloadError(f"{url} has {total} bytes but {expected_size} are expected; the remote file "
                                    "is not the published one: check the source URI", transient=False)
            partial.replace(dest)
            log.info("downloaded %s (%d bytes)", dest.name, total)
            return dest
    raise DownloadError(f"{url}: gave up after {policy.attempts} attempts ({last_problem}); {_size(partial)} bytes "
                        f"are kept in {partial} and the next run resumes from there", transient=True)


class _ServerError(Exception):
    """A 5xx or an unusable answer worth retrying."""


def _fetch_once(http: requests.Session, url: str, partial: Path, policy: RetryPolicy, stop: StopCheck) -> int:
    """Append what the server sends to `partial`; return the file's total size."""
    offset = _size(partial)
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with http.get(url, headers=headers, stream=True,
                  timeout=(policy.connect_timeout_s, policy.read_timeout_s)) as response:
        status = response.status_code
        if status == 416:  # asked for bytes past the end: the partial file is complete, or too long
            total = _total_from_content_range(response.headers.get("Content-Range"))
            if total is None or total != offset:
                partial.unlink(missing_ok=True)
                raise _ServerError(f"range {offset}- not satisfiable; restarting from byte 0")
            return total
        if status >= 500 or status == 429:
            raise _ServerError(f"HTTP {status}")
        if status not in (200, 206):
            raise DownloadError(f"{url}: HTTP {status} {response.reason}; check the source URI", transient=False)
        if status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range"), url)
            if start != offset:
                raise _ServerError(f"asked for byte {offset}, the server sent from {start}")
            mode = "ab"
        else:  # 200: the whole file (the server ignores ranges, or we asked from 0)
            length = response.headers.get("Content-Length")
            if length is None:
                raise DownloadError(f"{url}: the server gives no Content-Length, so the download cannot be "
                                    "checked for size; use an S3 or local copy as the source", transient=False)
            total = int(length)
            mode = "wb"
        with partial.open(mode) as handle:
            for chunk in response.iter_content(chunk_size=policy.chunk_bytes):
                handle.write(chunk)
                stopping.check(stop, f"while downloading {url} ({handle.tell()} bytes kept in {partial.name})")
        return total


def _parse_content_range(value: str | None, url: str) -> tuple[int, int]:
    match = _CONTENT_RANGE.match(value or "")
    if not match or match.group(1) is None or match.group(3) == "*":
        raise _ServerError(f"{url}: unusable Content-Range {value!r} in a 206 answer")
    return int(match.group(1)), int(match.group(3))


def _total_from_content_range(value: str | None) -> int | None:
    match = _CONTENT_RANGE.match(value or "")
    return int(match.group(3)) if match and match.group(3) != "*" else None


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0
