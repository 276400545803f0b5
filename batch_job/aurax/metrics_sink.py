"""Metric records as JSONL chunks under a metrics URI, at most one object per flush interval.

Each object written to the metrics prefix triggers the monitor Lambda, so records are buffered and written
as one chunk `{metrics_uri}/attempt-NNNN/chunk-SSSSSSSS.jsonl` per interval (plus a final one at exit).
Sequence numbers continue after the chunks already present for the attempt, so a job restarted under the
same attempt number (a local re-run) never overwrites earlier chunks.

Any job can use it for heartbeats: `start_ticker(callback)` calls `callback` once per interval from a
background thread (to add a heartbeat, check a stop flag, ...) and then flushes, so the job reports in even
while its main thread is busy in a long validation or checkpoint upload.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from aurax_contracts import MetricRecord, dump_metric_line
from aurax_contracts.layout import join, metrics_chunk_name

from . import storage

log = logging.getLogger(__name__)

#: The ticker's shortest period (a flush interval of 0, in tests, flushes from the caller instead).
MIN_TICK_SECONDS = 1.0


def _next_sequence(metrics_uri: str, attempt: int) -> int:
    prefix = join(metrics_uri, metrics_chunk_name(attempt, 0).split("/")[0])
    sequences = [int(uri.rsplit("chunk-", 1)[1].split(".")[0]) for uri in storage.list_uris(prefix)
                 if "chunk-" in uri.rsplit("/", 1)[-1]]
    return max(sequences, default=-1) + 1


class MetricsSink:
    def __init__(self, metrics_uri: str, attempt: int, flush_seconds: float = 60.0) -> None:
        self.metrics_uri = metrics_uri
        self.attempt = attempt
        self.flush_seconds = flush_seconds
        self._sequence = _next_sequence(metrics_uri, attempt)
        self._buffer: list[str] = []
        self._lock = threading.Lock()
        self._last_flush = float("-inf")
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def emit(self, record: MetricRecord) -> None:
        with self._lock:
            self._buffer.append(dump_metric_line(record))

    def maybe_flush(self) -> None:
        """Write the buffer if the flush interval has passed since the last write."""
        self.flush(force=False)

    def flush(self, force: bool = True) -> None:
        """Write the buffer now (at exit, and before an exit code others act on)."""
        with self._lock:
            if not self._buffer or (not force and time.monotonic() - self._last_flush < self.flush_seconds):
                return
            uri = join(self.metrics_uri, metrics_chunk_name(self.attempt, self._sequence))
            try:
                storage.write_text(uri, "".join(self._buffer), "application/x-ndjson")
            except storage.StorageError as exc:  # metrics must never stop the job: keep them for the next try
                log.warning("metrics not written (%s); %d records kept for the next flush", exc, len(self._buffer))
                return
            self._buffer.clear()
            self._sequence += 1
            self._last_flush = time.monotonic()

    def start_ticker(self, callback: Callable[[], None]) -> None:
        def tick() -> None:
            while not self._stop.wait(max(self.flush_seconds, MIN_TICK_SECONDS)):
                try:
                    callback()
                    self.maybe_flush()
                except Exception:  # a failed heartbeat must never stop training; the next tick retries
                    log.exception("metrics tick failed")

        self._ticker = threading.Thread(target=tick, name="metrics-ticker", daemon=True)
        self._ticker.start()

    def close(self) -> None:
        """Stop the ticker and write what is left."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        self.flush()
