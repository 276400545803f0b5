"""The attempt's finished work, counted by the main thread as it happens and read by the heartbeat thread.

A heartbeat from a background thread proves only that the process lives. The counters here move only when
training really moves (an optimizer step, a validation batch, checkpoint bytes written or uploaded), so the idle
watch, which compares them between heartbeats, sees a job hung inside a step or a collective for what it is.
"""

from __future__ import annotations

import threading

from aurax_contracts.metrics import Progress


class ProgressCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps = 0
        self._validation_batches = 0
        self._checkpoint_bytes = 0

    def step_done(self) -> None:
        with self._lock:
            self._steps += 1

    def validation_batch_done(self) -> None:
        with self._lock:
            self._validation_batches += 1

    def checkpoint_bytes_done(self, count: int) -> None:
        """Called from boto3's transfer threads during an upload as well as from the main thread."""
        with self._lock:
            self._checkpoint_bytes += count

    def snapshot(self) -> Progress:
        with self._lock:
            return Progress(optimizer_steps=self._steps, validation_batches=self._validation_batches,
                            checkpoint_bytes=self._checkpoint_bytes)
