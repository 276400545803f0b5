"""What can ask a running job (train, evaluate, prepare, preflight) to keep its finished work and stop: SIGTERM
(Batch stopping the container; the job command is the container's PID 1), the EC2 spot interruption notice
(polled from instance metadata, IMDSv2, every 5 s: a reclaim does not promise a SIGTERM first), and a
`StopRequest` the control plane writes to `{run-uri}/control/stop.json`.

Each job reads `InterruptWatch.pending()` between units of work (optimizer steps, decoding steps, encoded
batches, download chunks, preflight checks) and exits with the cause's code (75 when Batch should retry).

Environment: `AURAX_IMDS_ENDPOINT` (default `http://169.254.169.254`; `off` disables metadata look-ups),
`AURAX_SPOT_POLL_SECONDS` (default 5).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from enum import Enum
from types import FrameType
from typing import Any

from pydantic import ValidationError

from aurax_contracts import AbortReason, JobExit, StopRequest

from . import storage

log = logging.getLogger(__name__)

DEFAULT_IMDS_ENDPOINT = "http://169.254.169.254"
SPOT_ACTION_PATH = "latest/meta-data/spot/instance-action"
_TOKEN_TTL_SECONDS = "21600"


class ImdsClient:
    """Minimal IMDSv2 client: a session token, then GETs with it; a 404 is "no such item"."""

    def __init__(self, endpoint: str, timeout: float = 1.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self._token: str | None = None

    @classmethod
    def from_env(cls) -> ImdsClient | None:
        endpoint = os.environ.get("AURAX_IMDS_ENDPOINT", DEFAULT_IMDS_ENDPOINT)
        return None if endpoint.lower() in ("", "off", "none") else cls(endpoint)

    def _fetch_token(self) -> str:
        request = urllib.request.Request(f"{self.endpoint}/latest/api/token", method="PUT",
                                         headers={"X-aws-ec2-metadata-token-ttl-seconds": _TOKEN_TTL_SECONDS})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return response.read().decode()

    def get(self, path: str) -> str | None:
        """The item's text, or None on 404. Raises `OSError` when the service cannot be reached."""
        for _ in range(2):  # a second try with a fresh token if the first one expired (401)
            if self._token is None:
                self._token = self._fetch_token()
            request = urllib.request.Request(f"{self.endpoint}/{path.lstrip('/')}",
                                             headers={"X-aws-ec2-metadata-token": self._token})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return response.read().decode()
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return None
                if exc.code != 401:
                    raise
                self._token = None
        raise OSError("instance metadata refused a fresh token (401 twice)")


@dataclass(frozen=True)
class Placement:
    instance_type: str | None = None
    availability_zone: str | None = None
    reachable: bool = False
    """Whether the metadata service answered (it does on EC2, so spot notices can be polled)."""


def spot_notice_source(imds: ImdsClient | None, placement: Placement) -> ImdsClient | None:
    """The metadata client to poll for spot notices: none off EC2 (nothing answered, not under Batch). Under
    Batch this is EC2 whatever the first answer was: keep polling, since a reclaim need not send a SIGTERM first."""
    return imds if placement.reachable or "AWS_BATCH_JOB_ID" in os.environ else None


def read_placement(imds: ImdsClient | None) -> Placement:
    """Instance type and AZ for heartbeats (the cost ledger prices them); empty off EC2."""
    if imds is None:
        return Placement()
    try:
        return Placement(imds.get("latest/meta-data/instance-type"),
                         imds.get("latest/meta-data/placement/availability-zone"), reachable=True)
    except OSError as exc:
        log.info("instance metadata not reachable at %s (%s): heartbeats carry no placement", imds.endpoint, exc)
        return Placement()


class Cause(Enum):
    """Why training must stop, with the exit code and the `Interruption.cause` word."""

    SIGTERM = ("sigterm", JobExit.INTERRUPTED)
    SPOT_NOTICE = ("spot-notice", JobExit.INTERRUPTED)
    STOP_DIVERGED = ("budget-stop", JobExit.DIVERGED)
    STOP_OVER_BUDGET = ("budget-stop", JobExit.OVER_BUDGET)
    # An idle stop: the control plane terminates the job anyway; the checkpoint keeps the run resumable.
    STOP_IDLE = ("budget-stop", JobExit.INTERRUPTED)

    @property
    def record_cause(self) -> str:
        return self.value[0]

    @property
    def exit_code(self) -> JobExit:
        return self.value[1]


_STOP_CAUSES = {AbortReason.DIVERGED: Cause.STOP_DIVERGED, AbortReason.OVER_BUDGET: Cause.STOP_OVER_BUDGET,
                AbortReason.IDLE: Cause.STOP_IDLE}
#: Codes for agreeing on a cause across ranks (all-reduce MAX): the most final cause wins.
CAUSE_CODES: dict[Cause | None, int] = {None: 0, Cause.SIGTERM: 1, Cause.SPOT_NOTICE: 2, Cause.STOP_IDLE: 3,
                                        Cause.STOP_OVER_BUDGET: 4, Cause.STOP_DIVERGED: 5}
CODE_CAUSES = {code: cause for cause, code in CAUSE_CODES.items()}


_EARLY_SIGTERM = threading.Event()


def hold_sigterm_until_watched() -> None:
    """Record a SIGTERM that arrives before a job's `InterruptWatch` starts (its imports of torch and
    transformers take seconds), for the watch to act on when it starts. As the container's PID 1 the job would
    otherwise never see it: the kernel drops signals PID 1 has no handler for, so the job ran on until ECS
    killed it at the stop timeout, losing the work since its last checkpoint."""
    signal.signal(signal.SIGTERM, lambda signum, frame: _EARLY_SIGTERM.set())


def sigterm_held() -> bool:
    """Whether `hold_sigterm_until_watched` has held a SIGTERM (for a process that starts no watch of its own)."""
    return _EARLY_SIGTERM.is_set()


class InterruptWatch:
    """Collects stop causes from a signal handler, a spot-notice thread and stop-request checks."""

    def __init__(self, imds: ImdsClient | None, stop_request_uri: str | None,
                 poll_seconds: float | None = None) -> None:
        self.imds = imds
        self.stop_request_uri = stop_request_uri
        self.poll_seconds = poll_seconds if poll_seconds is not None else float(
            os.environ.get("AURAX_SPOT_POLL_SECONDS", "5"))
        self._causes: list[Cause] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._previous_handler: Any = None
        self._thread: threading.Thread | None = None

    def _add(self, cause: Cause) -> None:
        with self._lock:
            if cause not in self._causes:
                self._causes.append(cause)

    def pending(self) -> Cause | None:
        """The most final cause seen so far (a stop request outranks a SIGTERM), or None."""
        with self._lock:
            return max(self._causes, key=CAUSE_CODES.__getitem__, default=None)

    # ---- SIGTERM -------------------------------------------------------------------------------------
    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        log.warning("SIGTERM received: checkpointing after the current step, then exiting %d",
                    JobExit.INTERRUPTED)
        self._add(Cause.SIGTERM)

    # ---- spot notice ---------------------------------------------------------------------------------
    def check_spot_notice(self) -> None:
        if self.imds is None:
            return
        try:
            action = self.imds.get(SPOT_ACTION_PATH)
        except OSError as exc:
            log.debug("spot notice poll failed: %s", exc)
            return
        if action is not None:
            log.warning("spot interruption notice: %s; checkpointing now", action.strip())
            self._add(Cause.SPOT_NOTICE)

    def _poll_spot(self) -> None:
        while not self._done.wait(self.poll_seconds):
            self.check_spot_notice()

    # ---- stop request --------------------------------------------------------------------------------
    def check_stop_request(self) -> None:
        """Read the control plane's stop flag (called at each metrics flush)."""
        if self.stop_request_uri is None:
            return
        try:
            if not storage.exists(self.stop_request_uri):
                return
            request = StopRequest.model_validate_json(storage.read_bytes(self.stop_request_uri))
        except storage.StorageError as exc:
            log.error("cannot read the stop request at %s: %s; will retry", self.stop_request_uri, exc)
            return
        except ValidationError as exc:
            log.error("ignoring an invalid stop request at %s: %s", self.stop_request_uri, exc)
            return
        log.warning("stop requested (%s): %s", request.reason, request.detail)
        self._add(_STOP_CAUSES[AbortReason(request.reason)])

    # ---- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
        if _EARLY_SIGTERM.is_set():
            self._on_sigterm(signal.SIGTERM, None)
        if self.imds is not None:
            self._thread = threading.Thread(target=self._poll_spot, name="spot-notice", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._previous_handler is not None:
            signal.signal(signal.SIGTERM, self._previous_handler)
            self._previous_handler = None
        if self._thread is not None:
            self._thread.join(timeout=5)
