"""Where everything lives under the data bucket (or a local folder): the contract between the job, the
Lambdas and the CLI. URIs are `s3://bucket/prefix` or `file:///abs/path`; anything else is a local path."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

RUNS_PREFIX = "runs"
DATASETS_PREFIX = "datasets"
MODELS_PREFIX = "models"
METRICS_DIR = "metrics"
CHECKPOINTS_DIR = "checkpoints"


#: `<scheme>://` at the start of a location (two letters at least: `C://` is a Windows drive, not a scheme).
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
SUPPORTED_SCHEMES = ("s3", "file")


class LocationError(ValueError):
    """A location names an unsupported scheme or is malformed; the message says how to write it."""


@dataclass(frozen=True)
class Location:
    """Where a user-given location points: an S3 object (bucket and key) or a local path."""

    scheme: Literal["s3", "file"]
    bucket: str
    """The S3 bucket; "" for a local path."""
    key: str
    """The S3 key exactly as written, or the local path (not resolved)."""


def parse_location(location: str) -> Location:
    """Split a location the way its user meant it, never as a web URL.

    - `s3://BUCKET/KEY`: the key is everything after the bucket's slash, taken literally: `#`, `?`, `%`,
      spaces and `+` are part of S3 keys (`s3://b/clips/take #1.wav` is the key `clips/take #1.wav`).
    - `file:///PATH` (or `file:/PATH`, `file://localhost/PATH`): a local path; percent escapes are decoded as
      RFC 8089 says, so `Path.as_uri()` round-trips, but `#` and `?` are part of the name.
    - Anything else without `<scheme>://` is a local path, taken literally (`mix:part2.wav`, `C:\\clips`).

    Raises `LocationError` for another scheme (`gs://`, `https://`), an S3 URI without a bucket, or a file URI
    naming a remote host.
    """
    match = _SCHEME.match(location)
    if match:
        scheme, rest = match.group(1).lower(), location[match.end():]
        if scheme == "s3":
            bucket, _, key = rest.partition("/")
            if not bucket:
                raise LocationError(f"{location!r} has no bucket; write s3://BUCKET/KEY")
            return Location("s3", bucket, key)
        if scheme == "file":
            host, _, path = rest.partition("/")
            if host.lower() not in ("", "localhost"):
                raise LocationError(f"{location!r} names the host {host!r}; a file URI is a local path: "
                                    "file:///ABSOLUTE/PATH, or give the path itself")
            return Location("file", "", unquote("/" + path))
        raise LocationError(f"{location!r}: unsupported scheme {scheme!r}; use s3://BUCKET/KEY, "
                            "file:///PATH or a local path")
    if location[:6].lower() == "file:/":
        return Location("file", "", unquote(location[5:]))
    return Location("file", "", location)


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts if p)])


def stop_request_uri(run_uri: str) -> str:
    """Written by the control plane to ask a running job to checkpoint and stop (`StopRequest`); the jobs know
    their run by its URI, the control plane by bucket and run id (`RunLayout`)."""
    return join(run_uri, "control", "stop.json")


@dataclass(frozen=True)
class RunLayout:
    """Every path of one run under `root` (the bucket URI, e.g. `s3://aurax-data-123`)."""

    root: str
    run_id: str

    @property
    def run_uri(self) -> str:
        return join(self.root, RUNS_PREFIX, self.run_id)

    @property
    def config_uri(self) -> str:
        return join(self.run_uri, "config.json")

    @property
    def checkpoints_uri(self) -> str:
        return join(self.run_uri, CHECKPOINTS_DIR)

    @property
    def metrics_uri(self) -> str:
        return join(self.run_uri, METRICS_DIR)

    def eval_uri(self, point: str) -> str:
        return join(self.run_uri, "eval", point)

    def eval_report_uri(self, point: str) -> str:
        return join(self.eval_uri(point), "report.json")

    @property
    def stop_request_uri(self) -> str:
        return stop_request_uri(self.run_uri)

    @property
    def reports_uri(self) -> str:
        return join(self.run_uri, "reports")

    @property
    def model_uri(self) -> str:
        return join(self.root, MODELS_PREFIX, self.run_id)

    def dataset_uri(self, fingerprint: str) -> str:
        return join(self.root, DATASETS_PREFIX, fingerprint[:16])


def metrics_chunk_name(attempt: int, sequence: int) -> str:
    """Chunk names sort by attempt then sequence, so a listing reads in write order."""
    return f"attempt-{attempt:04d}/chunk-{sequence:08d}.jsonl"


def run_id_from_metrics_key(key: str) -> str | None:
    """`runs/<run_id>/metrics/...` -> run_id (None for any other key)."""
    parts = key.split("/")
    if len(parts) >= 4 and parts[0] == RUNS_PREFIX and parts[2] == METRICS_DIR:
        return parts[1]
    return None
